"""Writing an edit list (a probe) as MP4 bytes.

Probe media exist in two modes (`TasksConfig.media_mode`):

- ``reference``: nothing is encoded. A task's media reference carries the probe's edit
  list: for each segment the source ``uri``/``video_id``, ``source_start_s``/``source_end_s``
  (seconds from the source's first video frame), its place ``start_s``/``end_s`` on the probe
  timeline and, for rendered needles, the overlay text, box and font size. A trainer
  assembles the probe by concatenating the segments in order at normal speed and drawing each
  overlay on every frame of its segment (`vidcorpus.media.needle.draw_needle` does exactly
  what the written mode does).
- ``written``: this module assembles the same edit list into an H.264 MP4 (libx264, yuv420p,
  constant frame rate `fps`, no audio). Output frame k shows time k / fps; it takes the
  latest source frame at or before the matching source time, upright (display rotation
  applied) and scaled to cover the output size (centre crop). Sources are decoded with PyAV
  by seeking to each segment, so a probe costs its own length in decoding, not the source's.

Bytes are reproducible: bitexact muxer and codec flags, a fixed encoder thread count and the
same library versions give the same file for the same spec. The file is written with its
index first (faststart) so loaders can stream it.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import av
import numpy as np
from PIL import Image

from vidcorpus.config.tasks import NiahConfig
from vidcorpus.media.clips import x264_options
from vidcorpus.media.needle import draw_needle
from vidcorpus.tasks.records import EditList, ProbeSpec

Opener = Callable[[str], Any]  # uri -> a path, or a binary file object (closed after use)

_EPS_S = 1e-4


def open_local(uri: str) -> str:
    """Default opener: local paths and file:// URIs. Pipelines pass their filesystem's opener."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def upright_rgb(frame: av.VideoFrame, sar: float = 1.0) -> Image.Image:
    """The frame as an RGB image the way players show it: square pixels, display rotation applied.

    PyAV reports the display-matrix angle counter-clockwise, which is also PIL's direction.
    """
    image = frame.to_image()
    if abs(sar - 1.0) > 1e-3:
        image = image.resize((max(1, round(image.width * sar)), image.height), Image.Resampling.BILINEAR)
    rotation = round(getattr(frame, "rotation", 0) or 0)
    return image.rotate(rotation, expand=True) if rotation % 360 else image


def cover(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Scale `image` to cover width x height, then centre-crop: no bars, aspect kept."""
    if image.size != (width, height):
        scale = max(width / image.width, height / image.height)
        size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = (image.width - width) // 2, (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))
    return np.asarray(image.convert("RGB"))


class SourceVideo:
    """A source video opened for reading pieces of it by time (seconds from its first frame)."""

    def __init__(self, uri: str, opener: Opener = open_local):
        self.uri = uri
        handle = opener(uri)
        self._handle = None if isinstance(handle, (str, os.PathLike)) else handle  # ours to close
        try:
            self._container = av.open(handle, mode="r")
        except Exception:
            if self._handle is not None:
                self._handle.close()
            raise
        self._stream = self._container.streams.video[0]
        # No frame threading: frames still in flight across a seek would leak into the next read.
        self._stream.thread_type = "SLICE"
        rate = self._stream.average_rate or self._stream.guessed_rate or 30
        self._frame_s = 1.0 / float(rate)
        self.sar = float(self._stream.sample_aspect_ratio or 1) or 1.0
        self.origin_s = self._first_frame_time()

    def _first_frame_time(self) -> float:
        for frame in self._container.decode(self._stream):
            return float(frame.time or 0.0)
        raise ValueError(f"{self.uri}: no decodable video frame")

    def _decode_from(self, seconds: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """(time, frame) from the keyframe at or before `seconds` (source time) onwards."""
        target = self.origin_s + max(0.0, seconds)
        self._container.seek(int(target / float(self._stream.time_base)), stream=self._stream,
                             backward=True, any_frame=False)
        last = None
        for frame in self._container.decode(self._stream):
            time = frame.time - self.origin_s if frame.time is not None else (
                0.0 if last is None else last + self._frame_s)
            last = time
            yield time, frame

    def upright(self, frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
        """A decoded frame as the RGB picture of an output frame (upright, covering width x height)."""
        return cover(upright_rgb(frame, self.sar), width, height)

    def frames_at(self, times: Sequence[float]) -> Iterator[av.VideoFrame]:
        """For each time (ascending), the latest frame shown at that time; the first or last
        frame outside the stream's range."""
        if not times:
            return
        frames = self._decode_from(times[0])
        pending = next(frames, None)
        if pending is not None and pending[0] > times[0] + _EPS_S and times[0] > 0:
            frames = self._decode_from(0.0)  # the seek overshot: read from the start
            pending = next(frames, None)
        if pending is None:
            raise ValueError(f"{self.uri}: no frames at {times[0]:.3f}s")
        current = pending
        for target in times:
            while pending is not None and pending[0] <= target + _EPS_S:
                current = pending
                pending = next(frames, None)
            yield current[1]

    def close(self) -> None:
        self._container.close()
        if self._handle is not None:
            self._handle.close()


def segment_times(start_s: float, end_s: float, source_start_s: float, fps: float) -> list[float]:
    """Source times of the output frames k / fps that fall in [start_s, end_s)."""
    first, last = round(start_s * fps), round(end_s * fps)
    return [source_start_s + (k / fps - start_s) for k in range(first, last)]


def edit_frames(edit: EditList, opener: Opener = open_local) -> Iterator[np.ndarray]:
    """The edit list's output frames (RGB, width x height), one per 1 / fps, in order."""
    sources: dict[str, SourceVideo] = {}
    try:
        for segment in edit.segments:
            times = segment_times(segment.start_s, segment.end_s, segment.source_start_s, edit.fps)
            if segment.uri not in sources:
                sources[segment.uri] = SourceVideo(segment.uri, opener)
            last_frame, last_rgb = None, None
            source = sources[segment.uri]
            for frame in source.frames_at(times):
                if frame is not last_frame:
                    last_frame, last_rgb = frame, source.upright(frame, edit.width, edit.height)
                rgb = last_rgb
                if segment.overlay is not None:
                    overlay = segment.overlay
                    rgb = draw_needle(rgb, overlay.text, overlay.box, overlay.font_size, overlay.fg, overlay.bg)
                yield rgb
    finally:
        for source in sources.values():
            source.close()


def encode_mp4(
    frames: Iterable[np.ndarray], fps: float, width: int, height: int,
    *, crf: int = 23, preset: str = "veryfast", threads: int = 1,
) -> bytes:
    """H.264/yuv420p MP4 bytes of RGB frames at a constant `fps`, reproducible byte for byte."""
    with tempfile.TemporaryDirectory(prefix="vidcorpus-probe-") as tmp:
        path = os.path.join(tmp, "probe.mp4")  # faststart rewrites the file, so not a BytesIO
        with av.open(path, mode="w", format="mp4",
                     container_options={"fflags": "+bitexact", "movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.thread_count = threads
            stream.codec_context.options = x264_options(crf, preset)
            count = 0
            for count, rgb in enumerate(frames, start=1):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = count - 1
                for packet in stream.encode(frame):
                    container.mux(packet)
            if count == 0:
                raise ValueError("no frames to encode")
            for packet in stream.encode():
                container.mux(packet)
        return Path(path).read_bytes()


def render_edit_list(edit: EditList, config: NiahConfig | None = None, opener: Opener = open_local) -> bytes:
    """MP4 bytes of an edit list, encoded with the probe settings of `config`."""
    config = config or NiahConfig()
    return encode_mp4(edit_frames(edit, opener), edit.fps, edit.width, edit.height,
                      crf=config.crf, preset=config.preset, threads=config.encode_threads)


def render_probe(spec: ProbeSpec, config: NiahConfig | None = None, opener: Opener = open_local) -> bytes:
    """The written form of a probe: its edit list as MP4 bytes."""
    return render_edit_list(spec.edit, config, opener)
