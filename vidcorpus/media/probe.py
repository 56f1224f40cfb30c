"""Probe: container and stream metadata read from the header, before any frame is decoded.

Bad inputs stop here with a specific error: empty file, not a media file, no video stream,
or sizes beyond the configured limits.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

from vidcorpus.config.build import ProbeConfig
from vidcorpus.media.audio import audio_streams
from vidcorpus.media.errors import AbsurdInput, EmptyFile, ImplausibleTiming, NotAVideo, NoVideoStream

RATE_MISMATCH = 2.0
"""Frame count ÷ frame rate may differ from the header duration by this factor (either way)
before the container's timing is called implausible."""


def open_container(source: Any, size_bytes: int, timeout_s: float | None = None) -> av.container.InputContainer:
    """Open `source` (a local path or a binary file object) with PyAV; with `timeout_s`, FFmpeg
    gives up on any single open or read that waits longer."""
    if size_bytes == 0:
        raise EmptyFile("file is empty (0 bytes)")
    try:
        return av.open(source, mode="r", metadata_errors="ignore", timeout=timeout_s)
    except av.error.FFmpegError as exc:
        raise NotAVideo(f"not a readable media file: {exc}") from None


def probe(container: av.container.InputContainer, size_bytes: int, cfg: ProbeConfig) -> dict[str, Any]:
    """Header metadata as a partial `videos` row; decode fills in what headers may lack."""
    if size_bytes > cfg.max_file_bytes:
        raise AbsurdInput(f"file is {size_bytes} bytes, over probe.max_file_bytes={cfg.max_file_bytes}")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStream(f"no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = ctx.width, ctx.height
    if width <= 0 or height <= 0:
        raise NotAVideo(f"video stream has no frame size ({width}x{height})")
    if width * height > cfg.max_pixels:
        raise AbsurdInput(f"frame size {width}x{height} is over probe.max_pixels={cfg.max_pixels}")
    duration = header_duration(container, stream)
    check_timing(stream, duration)
    if duration is not None and duration > cfg.max_duration_s:
        raise AbsurdInput(f"duration {duration:.0f} s is over probe.max_duration_s={cfg.max_duration_s:.0f}")
    sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio or Fraction(1)
    audio = container.streams.audio[0] if container.streams.audio else None
    return {
        "size_bytes": size_bytes,
        "container": container.format.name.split(",")[0],
        "header_duration_s": duration,
        "header_fps": float(stream.average_rate or stream.guessed_rate or 0) or None,
        "width": width,
        "height": height,
        "sample_aspect_ratio": float(sar) if sar > 0 else 1.0,
        "video_codec": ctx.name,
        "pix_fmt": ctx.pix_fmt,
        "bit_rate": container.bit_rate or None,
        "has_audio": audio is not None,
        "audio_codec": audio.codec_context.name if audio else None,
        "audio_sample_rate": audio.codec_context.sample_rate if audio else None,
        "audio_channels": audio.codec_context.channels if audio else None,
        "audio_streams": audio_streams(container),
        "container_start_s": container.start_time / av.time_base if container.start_time is not None else 0.0,
    }


def header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def check_timing(stream: av.video.stream.VideoStream, duration: float | None) -> None:
    """Raise ImplausibleTiming when the header's clock cannot be right: a time base of a second
    or more per tick (a zero or missing time scale), or a frame count and rate that disagree with
    the duration (zero or absurd frame durations)."""
    if stream.time_base is not None and stream.time_base >= 1:
        raise ImplausibleTiming(f"the video track's time scale is {stream.time_base.denominator} tick(s) per "
                                f"{stream.time_base.numerator} s, so its timestamps are meaningless (a zero or "
                                "missing time scale in the header); re-mux the file with correct timing")
    rate, frames = stream.average_rate, stream.frames
    if duration and rate and frames > 1:
        implied = frames / float(rate)
        if not 1 / RATE_MISMATCH <= implied / duration <= RATE_MISMATCH:
            raise ImplausibleTiming(f"the header says {frames} frames at {float(rate):.3g} frames/s ({implied:.1f} s) "
                                    f"but a duration of {duration:.2f} s: its frame durations are zero or wrong; "
                                    "re-mux the file with correct timing")
