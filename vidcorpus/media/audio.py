"""Audio: every audio stream described from the header, and one track put beside a clip's picture.

A clip's MP4 is made video-only first (`media.clips`, `media.pieces`); its sound is then muxed in
from the source: the track's packets copied when the picture was copied and MP4 carries the
codec (so nothing is decoded and the cut is as exact as the audio frames, ~20 ms), else decoded,
trimmed to the sample and encoded to AAC. Either way the audio's clock starts where the picture's
does, at the clip's start in seconds from the video's first frame, so the two stay in sync.
Copying the picture again costs no pixel work; the video-only file stays intact until the track
is in, so a broken audio stream costs the sound, never the clip.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from vidcorpus.media.clips import BITEXACT
from vidcorpus.media.errors import MediaError

MP4_AUDIO_COPY_CODECS = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}
AAC_BIT_RATE = 128_000


class AudioError(MediaError):
    """An audio stream that cannot be read or written: the clip keeps its picture only."""


def audio_streams(container: av.container.InputContainer) -> list[dict[str, Any]]:
    """One row per audio stream, in stream order: codec, channels, sample rate, language tag."""
    return [{"index": i, "codec": s.codec_context.codec.canonical_name, "channels": s.codec_context.channels,
             "sample_rate": s.codec_context.sample_rate, "language": _language(s)}
            for i, s in enumerate(container.streams.audio)]


def _language(stream) -> str | None:
    tag = (stream.metadata or {}).get("language")
    return None if tag in (None, "", "und") else tag


def chosen_track(streams: list[dict[str, Any]], wanted: int) -> dict[str, Any] | None:
    """The audio stream clips carry (`audio.stream`, an index among the audio streams), or None
    when the video has no such stream."""
    return streams[wanted] if 0 <= wanted < len(streams) else None


def can_copy_audio(codec: str, picture_copied: bool) -> bool:
    return picture_copied and codec in MP4_AUDIO_COPY_CODECS


def mux_with_audio(picture, source, track: int, origin_s: float, start_s: float, end_s: float, copy: bool,
                   path: str) -> None:
    """Write the MP4 at `path`: the video stream of `picture` (a video-only clip) copied, plus
    audio stream `track` of `source` over [start_s, end_s) (seconds from the video's first frame,
    which lies at `origin_s` on the source's clock), copied or re-encoded to AAC. Raises
    AudioError when the audio cannot be read or encoded."""
    with av.open(picture, metadata_errors="ignore") as clip, av.open(source, metadata_errors="ignore") as src, \
            av.open(path, "w", format="mp4", container_options=BITEXACT) as out:
        video_in = clip.streams.video[0]
        video_out = out.add_stream_from_template(video_in)
        audio_in = src.streams.audio[track]
        try:
            if copy:
                packets = _copied_packets(src, audio_in, out.add_stream_from_template(audio_in), origin_s,
                                          start_s, end_s)
            else:
                packets = _encoded_packets(src, audio_in, _aac_stream(out, audio_in), origin_s, start_s, end_s)
            for packet in packets:
                out.mux(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioError(f"audio stream {track} ({audio_in.codec_context.name}) could not be "
                             f"{'copied' if copy else 're-encoded'}: {exc}") from None
        for packet in clip.demux(video_in):
            if packet.dts is None:
                continue
            packet.stream = video_out
            out.mux(packet)


def _copied_packets(src, stream, out_stream, origin_s: float, start_s: float, end_s: float):
    """The track's packets that overlap [start_s, end_s), retimed so start_s is time 0."""
    tb = stream.time_base
    shift = round(Fraction(origin_s + start_s).limit_denominator(10**9) / tb)
    _seek(src, stream, origin_s + start_s)
    for packet in src.demux(stream):
        if packet.pts is None or packet.dts is None:
            continue
        t = float(packet.pts * tb) - origin_s
        if t >= end_s - 1e-6:
            break
        if t + float((packet.duration or 0) * tb) <= start_s + 1e-6:
            continue
        packet.pts -= shift
        packet.dts -= shift
        packet.stream = out_stream
        yield packet


def _aac_stream(out, stream):
    ctx = stream.codec_context
    rate = ctx.sample_rate or 48000
    aac = out.add_stream("aac", rate=rate)
    aac.layout = "mono" if ctx.channels == 1 else "stereo"
    aac.bit_rate = AAC_BIT_RATE
    aac.codec_context.options = {"flags": "+bitexact"}
    return aac


def _encoded_packets(src, stream, aac, origin_s: float, start_s: float, end_s: float):
    """The track over [start_s, end_s) decoded, cut to the sample and encoded to AAC (the
    encoder's priming is recorded in the MP4's edit list, so sample 0 plays at time 0)."""
    rate = aac.codec_context.sample_rate
    resampler = av.AudioResampler(format="fltp", layout=aac.layout.name, rate=rate)
    first, last = round(start_s * rate), round(end_s * rate)   # samples from the first video frame
    written = 0
    _seek(src, stream, origin_s + start_s)
    for frame in _decoded(src, stream):
        if frame.pts is None:
            continue
        at = round((float(frame.pts * frame.time_base) - origin_s) * rate)
        for part in resampler.resample(frame):
            samples = part.to_ndarray()
            begin, end = at, at + samples.shape[1]
            at = end
            keep_from, keep_to = max(begin, first + written), min(end, last)
            if keep_to <= keep_from:
                if begin >= last:
                    break
                continue
            pad = keep_from - (first + written)     # a gap in the source: silence, not a shift
            chunk = samples[:, keep_from - begin:keep_to - begin]
            if pad > 0:
                chunk = np.concatenate([np.zeros((chunk.shape[0], pad), np.float32), chunk], axis=1)
            yield from aac.encode(_audio_frame(chunk, aac.layout.name, rate, written))
            written += chunk.shape[1]
        if at >= last:
            break
    if written == 0:
        raise ValueError(f"no audio in {start_s:.3f}-{end_s:.3f} s")
    yield from aac.encode(None)


def _decoded(src, stream):
    for packet in src.demux(stream):
        yield from packet.decode()


def _audio_frame(samples: np.ndarray, layout: str, rate: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32), format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def _seek(src, stream, t: float) -> None:
    """Seek the track to a little before `t` (seconds on the source's clock)."""
    target = max(0.0, t - 0.5)
    src.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)


SPEECH_RATE = 16000
"""Speech recognisers resample to 16 kHz mono; sending that keeps requests small."""
QUIET_WINDOW_S = 0.05


def speech_chunks(source, track: int, origin_s: float, chunk_s: float,
                  rate: int = SPEECH_RATE) -> Iterator[tuple[float, np.ndarray]]:
    """Audio stream `track` as mono float32 samples at `rate`, in chunks of about `chunk_s`
    seconds, each cut at the quietest QUIET_WINDOW_S of its last fifth (so a cut rarely falls
    inside a word): (start in seconds from the video's first frame, samples). One chunk is held
    at a time, whatever the video's length. Raises AudioError when the track cannot be decoded."""
    limit = round(chunk_s * rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    held: list[np.ndarray] = []
    count, start = 0, None
    try:
        with av.open(source, metadata_errors="ignore") as src:
            stream = src.streams.audio[track]
            for frame in _decoded(src, stream):
                if start is None and frame.pts is not None:
                    start = float(frame.pts * frame.time_base) - origin_s
                for part in resampler.resample(frame):
                    held.append(part.to_ndarray().reshape(-1))
                    count += held[-1].size
                while count >= limit:
                    samples = np.concatenate(held)
                    cut = quietest_point(samples[:limit], rate)
                    yield start or 0.0, samples[:cut]
                    start, held = (start or 0.0) + cut / rate, [samples[cut:]]
                    count = held[0].size
            for part in resampler.resample(None):
                held.append(part.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise AudioError(f"audio stream {track} could not be decoded: {exc}") from None
    if held and (samples := np.concatenate(held)).size:
        yield start or 0.0, samples


def quietest_point(samples: np.ndarray, rate: int) -> int:
    """The sample index starting the lowest-energy window in the last fifth of `samples`."""
    window = max(1, round(QUIET_WINDOW_S * rate))
    first = len(samples) * 4 // 5
    tail = samples[first:]
    if tail.size < window:
        return len(samples)
    energy = np.convolve(tail.astype(np.float64) ** 2, np.ones(window), mode="valid")
    return first + int(np.argmin(energy))


def wav_bytes(samples: np.ndarray, rate: int = SPEECH_RATE) -> bytes:
    """Mono float samples as a 16-bit PCM WAV file, the format every transcription API takes."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav", container_options=BITEXACT) as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
        for at in range(0, pcm.size, 4096):
            frame = av.AudioFrame.from_ndarray(pcm[None, at:at + 4096], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, at
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()
