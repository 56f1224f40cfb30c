"""Splicing H.264 MP4s by stream copy: the parts of one file may come from several encodes.

Every part is encoded with the same libx264 settings into closed groups of pictures of a fixed
length (an IDR frame every `gop` frames, no scene-cut key frames, no B-frames, `stitchable`
headers), so all parts share one parameter set (SPS/PPS) and a part can be cut in at any IDR
frame and cut off after any frame (with no B-frames, decode order is display order). A spliced
file is then packets copied in order, retimed to one constant frame rate: no pixel is decoded
or encoded again. Files are bit-exact (see `media.clips.x264_options`) and written with their
index first (faststart), to a path, never held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import av
import numpy as np

from vidcorpus.media.clips import x264_options

MUXER_OPTIONS = {"fflags": "+bitexact", "movflags": "+faststart"}


@dataclass(frozen=True)
class Part:
    """Frames [first, first + count) of the spliceable MP4 at `path`; `first` is an IDR frame."""
    path: str
    first: int
    count: int


def frame_rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def spliceable_options(crf: int, preset: str, gop: int) -> dict[str, str]:
    options = x264_options(crf, preset)
    options["x264-params"] += f":keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:stitchable=1"
    return options


class SpliceableEncoder:
    """A spliceable MP4 at `path`, encoded one picture at a time at a constant `fps`: pictures
    are RGB arrays (height x width x 3) or video frames of that size (yuv420p ones go to the
    encoder unconverted). Written to the file as it goes; `close` returns the frame count and
    raises ValueError when there was none."""

    def __init__(self, path: str, fps: float, width: int, height: int, *, crf: int, preset: str, threads: int,
                 gop: int):
        self.rate = frame_rate(fps)
        self.count = 0
        self.container = av.open(path, mode="w", format="mp4", container_options=MUXER_OPTIONS)
        self.stream = self.container.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.thread_count = threads
        self.stream.codec_context.options = spliceable_options(crf, preset, gop)

    def add(self, picture: np.ndarray | av.VideoFrame) -> None:
        frame = picture if isinstance(picture, av.VideoFrame) else av.VideoFrame.from_ndarray(
            np.ascontiguousarray(picture), format="rgb24")
        frame.pts, frame.time_base = self.count, 1 / self.rate
        frame.pict_type = 0  # a decoded picture keeps its type, and an I would force a key frame
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def abort(self) -> None:
        """Stop without flushing (the caller discards the file)."""
        self.container.close()

    def close(self) -> int:
        try:
            if self.count == 0:
                raise ValueError("no frames to encode")
            self.container.mux(self.stream.encode())
        finally:
            self.container.close()
        return self.count


def encode_frames(frames: Iterable[np.ndarray | av.VideoFrame], path: str, fps: float, width: int, height: int,
                  *, crf: int, preset: str, threads: int, gop: int) -> int:
    """Encode pictures (see `SpliceableEncoder`) into a spliceable MP4 at `path`; the frame count."""
    encoder = SpliceableEncoder(path, fps, width, height, crf=crf, preset=preset, threads=threads, gop=gop)
    try:
        for picture in frames:
            encoder.add(picture)
    except BaseException:
        encoder.abort()
        raise
    return encoder.close()


def parameter_sets(path: str) -> bytes:
    """The SPS/PPS (MP4 extradata) of a file's video stream."""
    with av.open(path) as container:
        return bytes(container.streams.video[0].codec_context.extradata or b"")


def splice(parts: Sequence[Part], path: str, fps: float) -> int:
    """Copy the parts' packets, in order, into one MP4 at `path` with frame k at time k / fps;
    returns the frame count. All parts must share their parameter sets (`parameter_sets`)."""
    rate = frame_rate(fps)
    time_base = 1 / rate
    with av.open(parts[0].path) as template, \
            av.open(path, mode="w", format="mp4", container_options=MUXER_OPTIONS) as out:
        stream = out.add_stream_from_template(template.streams.video[0])
        index = 0
        for part in parts:
            for packet in _packets(part, rate):
                packet.pts = packet.dts = index
                packet.duration = 1
                packet.time_base = time_base
                packet.stream = stream
                out.mux(packet)
                index += 1
    return index


def _packets(part: Part, rate: Fraction):
    """The part's packets in order (one per frame: no B-frames)."""
    with av.open(part.path) as container:
        stream = container.streams.video[0]
        per_frame = 1 / (stream.time_base * rate)
        if part.first:
            container.seek(round(part.first * per_frame), stream=stream, backward=True, any_frame=False)
        taken = 0
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            frame = round(packet.pts / per_frame)
            if frame < part.first:
                continue
            if taken == 0 and not packet.is_keyframe:
                raise ValueError(f"{part.path}: frame {part.first} is not an IDR frame")
            yield packet
            taken += 1
            if taken == part.count:
                return
    if taken < part.count:
        raise ValueError(f"{part.path}: {part.count} frames from {part.first} asked, {taken} found")
