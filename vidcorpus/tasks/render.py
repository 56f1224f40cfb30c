"""Writing edit lists (probes) as MP4 files.

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
  The probes of one video are written together: their plain haystack frames (no overlay)
  are encoded once per source (`Track`) in one-second closed GOPs (`media.splice`), and each
  probe is spliced from the tracks by stream copy; only its needles, and its frames up to a
  track's next IDR frame, are encoded for it. So a probe costs about its needles in
  encoding, and a video's probes together cost their haystacks' union once.

Bytes are reproducible: bitexact muxer and codec flags, a fixed encoder thread count and the
same library versions give the same file for the same spec. The file is written with its
index first (faststart) so loaders can stream it.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidcorpus.config.tasks import NiahConfig
from vidcorpus.media.decode import plane_pixels
from vidcorpus.media.needle import draw_needle
from vidcorpus.media.splice import Part, encode_frames, parameter_sets, splice
from vidcorpus.tasks.records import EditList, ProbeSpec, Segment

Opener = Callable[[str], Any]  # uri -> a path, or a binary file object (closed after use)

SHOWN_EPS_S = 1e-4
"""A frame at time t is shown at every time from t - SHOWN_EPS_S on (timestamps are rounded)."""


def open_local(uri: str) -> str:
    """Default opener: local paths and file:// URIs. Pipelines pass their filesystem's opener."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def proxied(opener: Opener, proxies: Mapping[str, str]) -> Opener:
    """An opener that serves each source that has a probe proxy (`tasks.proxy`) from the proxy:
    same times, pictures already at probe size."""
    return (lambda uri: opener(proxies.get(uri, uri))) if proxies else opener


SCALER = "AREA"
"""swscale's area filter: a true average when shrinking, and cheaper than its bilinear one."""


def _cover(frame: av.VideoFrame, sar: float, width: int, height: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(rotation, coded size to scale to, (left, top) of the crop after turning) for showing
    `frame` upright, covering width x height.

    PyAV reports the display-matrix angle counter-clockwise, which is also numpy's `rot90`'s."""
    rotation = round(getattr(frame, "rotation", 0) or 0) % 360
    turned = rotation in (90, 270)
    shown_w, shown_h = frame.width * (sar if abs(sar - 1.0) > 1e-3 else 1.0), frame.height
    if turned:
        shown_w, shown_h = shown_h, shown_w
    scale = max(width / shown_w, height / shown_h)
    cover_w, cover_h = max(width, round(shown_w * scale)), max(height, round(shown_h * scale))
    coded = (cover_h, cover_w) if turned else (cover_w, cover_h)
    return rotation, coded, ((cover_w - width) // 2, (cover_h - height) // 2)


def cover_frame(frame: av.VideoFrame, sar: float, width: int, height: int,
                scaler: VideoReformatter | None = None) -> np.ndarray:
    """The frame as players show it (square pixels, display rotation applied), scaled to cover
    width x height and centre-cropped: no bars, aspect kept. One swscale pass from the decoded
    picture straight to the covering size, so a large source is never converted at full size.

    A caller that scales frames another thread may scale at the same time (the decode pass's)
    passes a `scaler` of its own: a frame's built-in one must not serve two threads at once."""
    rotation, (coded_w, coded_h), (left, top) = _cover(frame, sar, width, height)
    rgb = _scaled(frame, scaler, width=coded_w, height=coded_h, format="rgb24").to_ndarray()
    if rotation:
        rgb = np.rot90(rgb, k=rotation // 90)
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def cover_picture(frame: av.VideoFrame, sar: float, width: int, height: int,
                  scaler: VideoReformatter | None = None) -> av.VideoFrame:
    """`cover_frame`'s picture as an encoder-ready yuv420p frame. Without rotation it is scaled
    straight to yuv420p and cropped there (on even pixels), so no RGB is made and converted back."""
    rotation, (coded_w, coded_h), (left, top) = _cover(frame, sar, width, height)
    if rotation:
        return av.VideoFrame.from_ndarray(cover_frame(frame, sar, width, height, scaler), format="rgb24")
    yuv = _scaled(frame, scaler, width=coded_w, height=coded_h, format="yuv420p")
    if (coded_w, coded_h) == (width, height):
        return yuv
    left, top = left & ~1, top & ~1
    planes = [plane_pixels(plane, coded_h >> (i > 0), coded_w >> (i > 0))[
        top >> (i > 0):(top + height) >> (i > 0), left >> (i > 0):(left + width) >> (i > 0)]
        for i, plane in enumerate(yuv.planes)]
    stacked = np.concatenate([p.ravel() for p in planes]).reshape(height * 3 // 2, width)
    return av.VideoFrame.from_ndarray(stacked, format="yuv420p")


def _scaled(frame: av.VideoFrame, scaler: VideoReformatter | None, **size_and_format) -> av.VideoFrame:
    if scaler is None:
        return frame.reformat(**size_and_format, interpolation=SCALER)
    return scaler.reformat(frame, **size_and_format, interpolation=SCALER)


class SourceVideo:
    """A source video opened for reading pieces of it by time (seconds from its first frame).

    With `frame_threads`, each read opens its own frame-threaded decoder (for long forward
    reads, such as a haystack track: about twice as fast); otherwise reads share one
    slice-threaded decoder, which is cheaper for many short reads."""

    def __init__(self, uri: str, opener: Opener = open_local, frame_threads: bool = False):
        self.uri = uri
        self._opener = opener if frame_threads else None
        self._reader: tuple[av.container.InputContainer, Any] | None = None
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
        container, stream = self._read_from_scratch() if self._opener is not None else (self._container, self._stream)
        target = self.origin_s + max(0.0, seconds)
        container.seek(int(target / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
        last = None
        for frame in container.decode(stream):
            time = frame.time - self.origin_s if frame.time is not None else (
                0.0 if last is None else last + self._frame_s)
            last = time
            yield time, frame

    def upright(self, frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
        """A decoded frame as the RGB picture of an output frame (upright, covering width x height)."""
        return cover_frame(frame, self.sar, width, height)

    def picture(self, frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
        """The same picture as `upright`, ready for the encoder (yuv420p where no rotation is needed)."""
        return cover_picture(frame, self.sar, width, height)

    def frames_at(self, times: Sequence[float]) -> Iterator[av.VideoFrame]:
        """For each time (ascending), the latest frame shown at that time; the first or last
        frame outside the stream's range."""
        if not times:
            return
        frames = self._decode_from(times[0])
        pending = next(frames, None)
        if pending is not None and pending[0] > times[0] + SHOWN_EPS_S and times[0] > 0:
            frames = self._decode_from(0.0)  # the seek overshot: read from the start
            pending = next(frames, None)
        if pending is None:
            raise ValueError(f"{self.uri}: no frames at {times[0]:.3f}s")
        current = pending
        for target in times:
            while pending is not None and pending[0] <= target + SHOWN_EPS_S:
                current = pending
                pending = next(frames, None)
            yield current[1]

    def _read_from_scratch(self) -> tuple[av.container.InputContainer, Any]:
        """A fresh frame-threaded decoder: no frame of an earlier read can be in flight in it."""
        self._close_reader()
        handle = self._opener(self.uri)
        container = av.open(handle, mode="r")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self._reader = (container, None if isinstance(handle, (str, os.PathLike)) else handle)
        return container, stream

    def _close_reader(self) -> None:
        if self._reader is not None:
            container, handle = self._reader
            container.close()
            if handle is not None:
                handle.close()
            self._reader = None

    def close(self) -> None:
        self._close_reader()
        self._container.close()
        if self._handle is not None:
            self._handle.close()


def segment_times(start_s: float, end_s: float, source_start_s: float, fps: float) -> list[float]:
    """Source times of the output frames k / fps that fall in [start_s, end_s)."""
    first, last = round(start_s * fps), round(end_s * fps)
    return [source_start_s + (k / fps - start_s) for k in range(first, last)]


def segment_frames(segment: Segment, fps: float) -> range:
    """Indices k of the output frames k / fps that fall in the segment's [start_s, end_s)."""
    return range(round(segment.start_s * fps), round(segment.end_s * fps))


def source_time(segment: Segment, k: int, fps: float) -> float:
    """Source time that output frame k of the segment shows."""
    return segment.source_start_s + (k / fps - segment.start_s)


def frame_count(edit: EditList) -> int:
    return round(edit.duration_s * edit.fps)


def edit_frames(edit: EditList, opener: Opener = open_local, first: int = 0,
                stop: int | None = None) -> Iterator[np.ndarray]:
    """The edit list's output frames k in [first, stop) (RGB, width x height), in order."""
    stop = frame_count(edit) if stop is None else stop
    sources: dict[str, SourceVideo] = {}
    try:
        for segment in edit.segments:
            frames = segment_frames(segment, edit.fps)
            times = [source_time(segment, k, edit.fps) for k in range(max(first, frames.start), min(stop, frames.stop))]
            if not times:
                continue
            if segment.uri not in sources:
                sources[segment.uri] = SourceVideo(segment.uri, opener)
            for rgb in _pictures(sources[segment.uri], times, edit.width, edit.height):
                if segment.overlay is not None:
                    overlay = segment.overlay
                    rgb = draw_needle(rgb, overlay.text, overlay.box, overlay.font_size, overlay.fg, overlay.bg)
                yield rgb
    finally:
        for source in sources.values():
            source.close()


def _pictures(source: SourceVideo, times: Sequence[float], width: int, height: int,
              encoder_ready: bool = False) -> Iterator[np.ndarray | av.VideoFrame]:
    """The upright picture shown at each time (a frame shown twice is converted once): RGB, or
    `encoder_ready` frames for pictures that are encoded as they are."""
    convert = source.picture if encoder_ready else source.upright
    last_frame, last_picture = None, None
    for frame in source.frames_at(times):
        if frame is not last_frame:
            last_frame, last_picture = frame, convert(frame, width, height)
        yield last_picture


# --------------------------------------------------------------------------- written probes


@dataclass(frozen=True)
class Track:
    """Frames j in [first, stop) of one source on the grid j / fps (shifted by `phase`
    thousandths of a frame), encoded once as a spliceable MP4 at `path` and shared by every
    probe of the batch whose haystack shows them."""
    uri: str
    phase: int
    first: int
    stop: int
    path: str = ""


def grid_position(seconds: float, fps: float) -> tuple[int, int]:
    """(j, phase): `seconds` is (j + phase / 1000) / fps."""
    x = seconds * fps
    j = math.floor(x + 1e-6)
    phase = round((x - j) * 1000)
    return (j + 1, 0) if phase >= 1000 else (j, phase)


def _plain_haystack(edit: EditList) -> Iterator[tuple[Segment, range]]:
    """Segments shown unchanged from the source (no needle, no overlay), with their frames."""
    for segment in edit.segments:
        if segment.role == "haystack" and segment.overlay is None:
            yield segment, segment_frames(segment, edit.fps)


def plan_tracks(edits: Sequence[EditList], gop: int) -> list[Track]:
    """The tracks covering the plain haystack frames of `edits` (same fps and size): per source and
    grid phase, their frame ranges merged where they overlap or lie within a GOP of each other."""
    ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for edit in edits:
        for segment, frames in _plain_haystack(edit):
            if len(frames):
                j, phase = grid_position(source_time(segment, frames.start, edit.fps), edit.fps)
                ranges.setdefault((segment.uri, phase), []).append((j, j + len(frames)))
    tracks = []
    for (uri, phase), spans in sorted(ranges.items()):
        spans.sort()
        first, stop = spans[0]
        for a, b in spans[1:]:
            if a > stop + gop:
                tracks.append(Track(uri, phase, first, stop))
                first, stop = a, b
            else:
                stop = max(stop, b)
        tracks.append(Track(uri, phase, first, stop))
    return tracks


def splice_parts(edit: EditList, tracks: Sequence[Track], gop: int) -> list[tuple[Track | None, int, int]]:
    """The edit list as parts, in order: (track, first track frame, count) copied from a track,
    or (None, first output frame, stop) encoded afresh: the needles, and the frames before the
    first IDR frame of a track that a haystack piece reaches."""
    copies: dict[int, tuple[Track, int]] = {}
    for segment, frames in _plain_haystack(edit):
        for k in frames:
            j, phase = grid_position(source_time(segment, k, edit.fps), edit.fps)
            track = next((t for t in tracks if (t.uri, t.phase) == (segment.uri, phase) and t.first <= j < t.stop),
                         None)
            if track is not None:
                copies[k] = track, j

    def copy_starts(k: int) -> bool:
        return k in copies and (copies[k][1] - copies[k][0].first) % gop == 0

    parts: list[tuple[Track | None, int, int]] = []
    n, k = frame_count(edit), 0
    while k < n:
        start = k
        if copy_starts(k):
            track, j = copies[k]
            while k < n and copies.get(k) == (track, j + k - start):
                k += 1
            parts.append((track, j - track.first, k - start))
        else:
            k += 1
            while k < n and not copy_starts(k):
                k += 1
            parts.append((None, start, k))
    return parts


def probe_gop(fps: float) -> int:
    """Frames per GOP of probe media: one second, so a needle re-encodes at most a second more."""
    return max(1, round(fps))


def write_probes(specs: Sequence[ProbeSpec], paths: Sequence[str], config: NiahConfig | None = None,
                 opener: Opener = open_local, proxies: Mapping[str, str] | None = None) -> None:
    """Write the probes' edit lists as MP4s to local `paths`.

    The plain haystack frames are encoded once per source (`Track`), whichever probes show
    them, and each probe is spliced from them by stream copy; only its needles and the frames
    up to a track's next IDR frame are encoded for the probe itself. A source with a probe
    proxy (`proxies`: source uri -> proxy uri, see `tasks.proxy`) is its own track, and its
    pictures are read from it. Probes of another frame rate or size than the first are
    encoded whole."""
    config = config or NiahConfig()
    if not specs:
        return
    proxies = proxies or {}
    footage = proxied(opener, proxies)
    first = specs[0].edit
    shared = [s.edit for s in specs if _frame_format(s.edit) == _frame_format(first)]
    gop = probe_gop(first.fps)
    with tempfile.TemporaryDirectory(prefix="vidcorpus-probes-") as tmp:
        whole = {uri: _proxy_track(uri, proxy, opener, tmp) for uri, proxy in proxies.items()}
        tracks = [_covering(track, whole.get(track.uri))
                  or _encode_track(track, os.path.join(tmp, f"track{i}.mp4"), first, config, gop, opener)
                  for i, track in enumerate(plan_tracks(shared, gop))]
        for spec, path in zip(specs, paths):
            if spec.edit in shared:
                _write_spliced(spec.edit, tracks, path, tmp, config, gop, footage)
            else:
                _encode(edit_frames(spec.edit, footage), path, spec.edit, config, gop)


def _proxy_track(uri: str, proxy: str, opener: Opener, tmp: str) -> Track | None:
    """The proxy of `uri` as a track of all its frames, at a local path; None if it cannot be read."""
    try:
        handle = opener(proxy)
        if isinstance(handle, (str, os.PathLike)):
            path = os.fspath(handle)
        else:
            path = os.path.join(tmp, f"proxy-{len(os.listdir(tmp))}.mp4")
            with handle, open(path, "wb") as out:
                shutil.copyfileobj(handle, out)
        with av.open(path) as container:
            frames = container.streams.video[0].frames
        return Track(uri, 0, 0, frames, path) if frames else None
    except (OSError, av.error.FFmpegError):
        return None


def _covering(track: Track, proxy: Track | None) -> Track | None:
    """The proxy's track where it holds all of `track`'s frames (on its grid phase)."""
    return proxy if proxy is not None and track.phase == 0 and track.stop <= proxy.stop else None


def _frame_format(edit: EditList) -> tuple[float, int, int]:
    return edit.fps, edit.width, edit.height


def _encode(frames: Iterable[np.ndarray | av.VideoFrame], path: str, edit: EditList, config: NiahConfig, gop: int) -> int:
    return encode_frames(frames, path, edit.fps, edit.width, edit.height, crf=config.crf, preset=config.preset,
                         threads=config.encode_threads, gop=gop)


def _encode_track(track: Track, path: str, like: EditList, config: NiahConfig, gop: int, opener: Opener) -> Track:
    times = [(j + track.phase / 1000) / like.fps for j in range(track.first, track.stop)]
    source = SourceVideo(track.uri, opener, frame_threads=True)
    try:
        _encode(_pictures(source, times, like.width, like.height, encoder_ready=True), path, like, config, gop)
    finally:
        source.close()
    return Track(track.uri, track.phase, track.first, track.stop, path)


def _write_spliced(edit: EditList, tracks: Sequence[Track], path: str, tmp: str, config: NiahConfig, gop: int,
                   opener: Opener) -> None:
    parts = []
    for i, (track, a, b) in enumerate(splice_parts(edit, tracks, gop)):
        if track is not None:
            parts.append(Part(track.path, a, b))
        else:
            fresh = os.path.join(tmp, f"fresh{i}.mp4")
            parts.append(Part(fresh, 0, _encode(edit_frames(edit, opener, a, b), fresh, edit, config, gop)))
    if len({parameter_sets(p.path) for p in parts}) == 1:
        splice(parts, path, edit.fps)
    else:  # an encoder that would not keep one parameter set: encode the probe whole
        _encode(edit_frames(edit, opener), path, edit, config, gop)


def render_probe(spec: ProbeSpec, config: NiahConfig | None = None, opener: Opener = open_local) -> bytes:
    """The written form of one probe as MP4 bytes (for tests and small tools; the build writes
    probes to files with `write_probes`)."""
    with tempfile.TemporaryDirectory(prefix="vidcorpus-probe-") as tmp:
        path = os.path.join(tmp, "probe.mp4")
        write_probes([spec], [path], config, opener)
        return Path(path).read_bytes()


def encode_mp4(
    frames: Iterable[np.ndarray], fps: float, width: int, height: int,
    *, crf: int = 23, preset: str = "veryfast", threads: int = 1,
) -> bytes:
    """H.264/yuv420p MP4 bytes of RGB frames at a constant `fps`, reproducible byte for byte
    (one-second GOPs, as probes are encoded)."""
    with tempfile.TemporaryDirectory(prefix="vidcorpus-mp4-") as tmp:
        path = os.path.join(tmp, "video.mp4")
        encode_frames(frames, path, fps, width, height, crf=crf, preset=preset, threads=threads,
                      gop=max(1, round(fps)))
        return Path(path).read_bytes()
