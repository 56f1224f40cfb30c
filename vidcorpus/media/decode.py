"""Decode once: one streaming pass over a video's frames at a small working resolution.

Frames are yielded one at a time (nothing accumulates), with their presentation time in seconds
from the first frame, so timestamps stay right under variable frame rate. Geometry (rotation
from the display matrix, non-square pixels) is read from the first frame and applied to every
picture that leaves this module, so all of them are upright at their display aspect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np

from vidcorpus.media.errors import DecodeError


@dataclass(frozen=True)
class Geometry:
    width: int                # coded
    height: int
    sar: float
    rotation: int             # clockwise degrees that make the picture upright

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a viewer sees it: SAR applied, then rotation."""
        w, h = _even(self.width * self.sar), _even(self.height)
        return (h, w) if self.rotation in (90, 270) else (w, h)

    def scaled(self, longest: int | None = None, width: int | None = None, short: int | None = None) -> tuple[int, int]:
        """Pre-rotation (width, height) to reformat to, so that after rotation the picture has
        display aspect and its longest side, display width or shorter side is as asked (never upscaled)."""
        dw, dh = self.display_size
        target, side = ((width, dw) if width is not None else (short, min(dw, dh)) if short is not None
                        else (longest, max(dw, dh)))
        scale = min(1.0, target / side)
        out_w, out_h = _even(dw * scale), _even(dh * scale)
        return (out_h, out_w) if self.rotation in (90, 270) else (out_w, out_h)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def geometry_of(frame: av.VideoFrame, sar: float) -> Geometry:
    # PyAV reports the display matrix angle counter-clockwise; we store the clockwise fix.
    return Geometry(frame.width, frame.height, sar, int(round(-frame.rotation)) % 360)


def upright(frame: av.VideoFrame, geometry: Geometry, size: tuple[int, int], fmt: str = "rgb24",
            interpolation: str = "BILINEAR") -> np.ndarray:
    """The frame as an upright array at `size` (pre-rotation width, height)."""
    arr = frame.reformat(width=size[0], height=size[1], format=fmt, interpolation=interpolation).to_ndarray()
    if geometry.rotation:
        arr = np.ascontiguousarray(np.rot90(arr, k=-geometry.rotation // 90))
    return arr


@dataclass
class StreamFrame:
    index: int
    pts: int
    t: float                  # seconds from the first frame
    key: bool
    small: np.ndarray         # BGR at working resolution, upright
    frame: av.VideoFrame      # full resolution; valid while this item is current


class FrameStream:
    """Iterate a container's first video stream once; `geometry` and `origin` are set from the
    first frame, `time_base` converts pts to seconds."""

    def __init__(self, container: av.container.InputContainer, working_width: int, threads: int = 0,
                 sar: float = 1.0):
        self.container = container
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = threads
        self.time_base = self.stream.time_base
        self.working_width = working_width
        self.sar = sar
        self.geometry: Geometry | None = None
        self.origin_pts: int | None = None
        self.last_t = 0.0

    def __iter__(self) -> Iterator[StreamFrame]:
        index = 0
        last_pts = None
        try:
            for frame in self.container.decode(self.stream):
                pts = frame.pts if frame.pts is not None else (last_pts or 0) + 1
                if last_pts is not None and pts <= last_pts:
                    continue  # duplicate or out-of-order timestamp: keep the stream monotonic
                if self.geometry is None:
                    self.geometry = geometry_of(frame, self.sar)
                    self.origin_pts = pts
                    size = self.geometry.scaled(width=self.working_width)
                last_pts = pts
                t = float((pts - self.origin_pts) * self.time_base)
                self.last_t = t
                small = upright(frame, self.geometry, size, fmt="bgr24", interpolation="FAST_BILINEAR")
                yield StreamFrame(index, pts, t, bool(frame.key_frame), small, frame)
                index += 1
        except av.error.FFmpegError as exc:
            raise DecodeError(f"decoding stopped at frame {index} ({self.last_t:.2f} s): {exc}") from None

    def seconds(self, pts: int) -> float:
        return float((pts - self.origin_pts) * self.time_base)
