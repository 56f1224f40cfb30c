"""Clip cutting: an MP4 per scene, by stream copy when the cut allows it, else by re-encoding.

Stream copy needs both cut points on key frames, an upright picture (copied streams lose
display-matrix rotation) and a codec MP4 can carry; it touches no pixels. Re-encoding reads the
full-resolution frames of a video's re-encoded clips again (the only second read of pixels), in
one forward reading per video, and writes them upright at display aspect with libx264. Both
write bit-exact MP4s (no muxer/encoder version strings, fixed encoder threads), so the same
input gives the same bytes. Clips hold video only.
"""

from __future__ import annotations

import io
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


def copy_clip(source, start_pts: int, end_pts: int | None) -> bytes:
    """Remux the packets of [start_pts, end_pts) (stream time base) into a new MP4."""
    buf = io.BytesIO()
    with av.open(source, metadata_errors="ignore") as src, \
            av.open(buf, "w", format="mp4", container_options=BITEXACT) as dst:
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
    return buf.getvalue()


def reencode_clips(source, geometry: Geometry, origin_pts: int, spans: Sequence[tuple[float, float]],
                   key_times: Sequence[float], fps: float, cfg: ClipMp4Config) -> Iterator[bytes]:
    """Decode the spans [start_s, end_s) (disjoint, in time order) again at full resolution and
    encode each upright with libx264, yielding one MP4 per span.

    One reading of the source serves them all: it seeks only where the key frame at or before the
    next span's start (`key_times`, seconds, ascending) lies beyond the frames already read, so
    adjacent clips are decoded once instead of each from its own preceding key frame.
    """
    size = geometry.scaled(short=cfg.max_short_side)
    with av.open(source, metadata_errors="ignore") as src:
        frames = SourceFrames(src, origin_pts)
        for start_s, end_s in spans:
            if not frames.reached(_key_at_or_before(key_times, start_s)):
                frames.seek(start_s)
            yield _encode(frames.between(start_s, end_s), geometry, size, fps, start_s, cfg)


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


def _encode(frames: Iterator[tuple[float, av.VideoFrame]], geometry: Geometry, size: tuple[int, int],
            fps: float, start_s: float, cfg: ClipMp4Config) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", container_options=BITEXACT) as dst:
        out = _x264_stream(dst, geometry, size, fps, cfg)
        last = -1
        for t, frame in frames:
            pts = round((t - start_s) / ENCODE_TIME_BASE)
            if pts <= last:
                continue
            last = pts
            picture = _encoder_picture(frame, geometry, size)
            picture.pts, picture.time_base = pts, ENCODE_TIME_BASE
            dst.mux(out.encode(picture))
        dst.mux(out.encode(None))
    return buf.getvalue()


def _encoder_picture(frame: av.VideoFrame, geometry: Geometry, size: tuple[int, int]) -> av.VideoFrame:
    """Scale straight to the encoder's format; only a rotated picture takes the RGB detour."""
    if geometry.rotation == 0:
        return frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="BILINEAR")
    return av.VideoFrame.from_ndarray(upright(frame, geometry, size), format="rgb24")


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
    macroblock-tree rate control, whose output was seen to vary from run to run."""
    return {"crf": str(crf), "preset": preset, "flags": "+bitexact", "x264-params": "mbtree=0"}
