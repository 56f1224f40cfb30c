"""Clip cutting: an MP4 per scene, by stream copy when the cut allows it, else by re-encoding.

Stream copy needs both cut points on key frames, an upright picture (copied streams lose
display-matrix rotation) and a codec MP4 can carry; it touches no pixels. For re-encoding, the
decode pass feeds re-encoded clips their frames (`media.pieces`); only a clip the pass could not
encode is read again, in one forward reading per video. Re-encoded clips are upright at display
aspect, by libx264. Every clip MP4 is written to its file as it is made, and bit-exact (no
muxer/encoder version strings, fixed encoder threads), so the same input gives the same bytes.
Clips are made video-only here; `media.audio` then puts their sound beside the picture.
"""

from __future__ import annotations

from bisect import bisect_right
from fractions import Fraction
from typing import Iterator, Sequence

import av

from vidcorpus.config.build import ClipMp4Config
from vidcorpus.media.decode import Geometry, upright

MP4_COPY_CODECS = {"h264", "hevc", "av1", "mpeg4", "vp9"}
BITEXACT = {"fflags": "+bitexact"}
ENCODE_TIME_BASE = Fraction(1, 1000)


def can_copy(codec: str, geometry: Geometry, start_is_key: bool, end_is_key: bool) -> bool:
    return codec in MP4_COPY_CODECS and geometry.rotation == 0 and start_is_key and end_is_key


def copy_clip(source, start_pts: int, end_pts: int | None, path: str) -> None:
    """Remux the packets of [start_pts, end_pts) (stream time base) into a new MP4 at `path`."""
    with av.open(source, metadata_errors="ignore") as src, \
            av.open(path, "w", format="mp4", container_options=BITEXACT) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        src.seek(start_pts, stream=stream, backward=True, any_frame=False)
        for packet in src.demux(stream):
            if packet.pts is None or packet.dts is None:
                continue
            if packet.pts < start_pts:
                continue
            if end_pts is not None and packet.is_keyframe and packet.pts >= end_pts:
                break
            packet.pts -= start_pts
            packet.dts -= start_pts
            packet.stream = out
            dst.mux(packet)


def reencode_clips(source, geometry: Geometry, origin_pts: int, spans: Sequence[tuple[float, float]],
                   key_times: Sequence[float], fps: float, cfg: ClipMp4Config, paths: Sequence[str]) -> None:
    """Decode the spans [start_s, end_s) (disjoint, in time order) again at full resolution and
    encode each upright with libx264 to its path. For the clips the decode pass could not
    encode (`media.pieces`): their cut was reported late, or they are pieces merged or split.

    One reading of the source serves them all: it seeks only where the key frame at or before the
    next span's start (`key_times`, seconds, ascending) lies beyond the frames already read, so
    adjacent clips are decoded once instead of each from its own preceding key frame.
    """
    with av.open(source, metadata_errors="ignore") as src:
        frames = SourceFrames(src, origin_pts)
        for (start_s, end_s), path in zip(spans, paths):
            if not frames.reached(_key_at_or_before(key_times, start_s)):
                frames.seek(start_s)
            with ClipEncoder(path, geometry, fps, start_s, cfg) as encoder:
                for t, frame in frames.between(start_s, end_s):
                    encoder.add(t, frame)


def _key_at_or_before(key_times: Sequence[float], t: float) -> float:
    i = bisect_right(key_times, t + 1e-6)
    return key_times[i - 1] if i else float("-inf")


class SourceFrames:
    """A source's full-resolution frames with their time from the first frame, read forward and
    held one frame ahead, so a span that starts where the last one ended reads on."""

    def __init__(self, src, origin_pts: int):
        self.src, self.stream, self.origin_pts = src, src.streams.video[0], origin_pts
        self.stream.thread_type = "AUTO"
        self._frames: Iterator | None = None
        self._held: tuple[float, av.VideoFrame] | None = None
        self._last_t = float("-inf")

    def reached(self, t: float) -> bool:
        """Whether the frames read so far reach time `t`: from a key frame at `t`, reading on
        decodes no more than a seek back to that key frame would."""
        return self._frames is not None and self._last_t >= t - 1e-6

    def seek(self, t: float) -> None:
        """Read on from the key frame at or before `t`."""
        tb = self.stream.time_base
        self.src.seek(self.origin_pts + int(t / tb), stream=self.stream, backward=True, any_frame=False)
        self._frames, self._held, self._last_t = self._decoded(), None, float("-inf")

    def between(self, start_s: float, end_s: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """(t, frame) for start_s <= t < end_s; the first frame at or past end_s is held back."""
        while True:
            item = self._held if self._held is not None else next(self._frames, None)
            self._held = None
            if item is None:
                return
            if item[0] >= end_s - 1e-6:
                self._held = item
                return
            if item[0] >= start_s - 1e-6:
                yield item

    def _decoded(self) -> Iterator[tuple[float, av.VideoFrame]]:
        tb = self.stream.time_base
        for frame in self.src.decode(self.stream):
            if frame.pts is not None:
                self._last_t = float((frame.pts - self.origin_pts) * tb)
                yield self._last_t, frame


class ClipEncoder:
    """One clip's MP4, encoded upright with libx264 and written to `path` frame by frame (never
    held in memory). Frames are (seconds from the video's first frame, full-resolution frame);
    the clip's clock starts at `start_s`. The container holds one video stream (`media.audio`
    adds the sound afterwards, from the source)."""

    def __init__(self, path: str, geometry: Geometry, fps: float, start_s: float, cfg: ClipMp4Config):
        self.geometry, self.start_s = geometry, start_s
        self.size = geometry.scaled(short=cfg.max_short_side)
        self.container = av.open(path, "w", format="mp4", container_options=BITEXACT)
        self.video = _x264_stream(self.container, geometry, self.size, fps, cfg)
        self._last_pts = -1

    def add(self, t: float, frame: av.VideoFrame) -> None:
        pts = round((t - self.start_s) / ENCODE_TIME_BASE)
        if pts <= self._last_pts:
            return
        self._last_pts = pts
        picture = _encoder_picture(frame, self.geometry, self.size)
        picture.pts, picture.time_base = pts, ENCODE_TIME_BASE
        self.container.mux(self.video.encode(picture))

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        self.container.close()

    def __enter__(self) -> "ClipEncoder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()


def _encoder_picture(frame: av.VideoFrame, geometry: Geometry, size: tuple[int, int]) -> av.VideoFrame:
    """Scale straight to the encoder's format; only a rotated picture takes the RGB detour."""
    if geometry.rotation == 0:
        return frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="AREA")
    return av.VideoFrame.from_ndarray(upright(frame, geometry, size, interpolation="AREA"), format="rgb24")


def _x264_stream(dst, geometry: Geometry, size: tuple[int, int], fps: float, cfg: ClipMp4Config):
    out = dst.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000) if fps > 0 else 25)
    w, h = (size[1], size[0]) if geometry.rotation in (90, 270) else size
    out.width, out.height, out.pix_fmt = w, h, "yuv420p"
    out.time_base = out.codec_context.time_base = ENCODE_TIME_BASE  # keep source timing exact (VFR too)
    out.codec_context.thread_count = cfg.encoder_threads
    out.codec_context.options = x264_options(cfg.crf, cfg.preset)
    return out


def x264_options(crf: int, preset: str) -> dict[str, str]:
    """libx264 settings that give the same bytes for the same pictures: bit-exact, and no
    macroblock-tree rate control, whose output was seen to vary from run to run. P-frames skip
    8x8 partitions (as `superfast` and faster presets do): on the real test videos at 480p and
    crf 23 `veryfast` then encodes 17% faster for the same bytes and 0.06 dB less PSNR."""
    return {"crf": str(crf), "preset": preset, "flags": "+bitexact", "x264-params": "mbtree=0:partitions=i8x8,i4x4"}
