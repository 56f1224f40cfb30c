"""Clip cutting: an MP4 per scene, by stream copy when the cut allows it, else by re-encoding.

Stream copy needs both cut points on key frames, an upright picture (copied streams lose
display-matrix rotation) and a codec MP4 can carry; it touches no pixels. Re-encoding reads the
full-resolution frames of that span again (the only second read of pixels), writes them
upright at display aspect with libx264. Both write bit-exact MP4s (no muxer/encoder version
strings, fixed encoder threads), so the same input gives the same bytes. Clips hold video only.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av

from vidcorpus.config import ClipsConfig
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


def reencode_clip(source, geometry: Geometry, origin_pts: int, start_s: float, end_s: float,
                  fps: float, cfg: ClipsConfig) -> bytes:
    """Decode [start_s, end_s) again at full resolution and encode it upright with libx264."""
    size = geometry.scaled(short=cfg.max_short_side)
    buf = io.BytesIO()
    with av.open(source, metadata_errors="ignore") as src, \
            av.open(buf, "w", format="mp4", container_options=BITEXACT) as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        out = _x264_stream(dst, geometry, size, fps, cfg)
        tb = stream.time_base
        src.seek(origin_pts + int(start_s / tb), stream=stream, backward=True, any_frame=False)
        last = -1
        for frame in src.decode(stream):
            if frame.pts is None:
                continue
            t = float((frame.pts - origin_pts) * tb)
            if t < start_s - 1e-6:
                continue
            if t >= end_s - 1e-6:
                break
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


def _x264_stream(dst, geometry: Geometry, size: tuple[int, int], fps: float, cfg: ClipsConfig):
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
