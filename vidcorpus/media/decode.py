"""Decode once: one streaming pass over a video's frames at a small working resolution.

Frames are yielded one at a time (nothing accumulates), with their presentation time in seconds
from the first frame, so timestamps stay right under variable frame rate. Geometry (rotation
from the display matrix, non-square pixels) is read from the first frame and applied to every
picture that leaves this module, so all of them are upright at their display aspect.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import av
import cv2
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
        w, h = snap(self.width * self.sar), snap(self.height)
        return (h, w) if self.rotation in (90, 270) else (w, h)

    def scaled(self, longest: int | None = None, short: int | None = None) -> tuple[int, int]:
        """Pre-rotation (width, height) to reformat to, so that after rotation the picture has
        display aspect and its longest (or shorter) side is as asked (never upscaled)."""
        dw, dh = self.display_size
        target, side = (short, min(dw, dh)) if short is not None else (longest, max(dw, dh))
        scale = min(1.0, target / side)
        out_w, out_h = snap(dw * scale), snap(dh * scale)
        return (out_h, out_w) if self.rotation in (90, 270) else (out_w, out_h)


def snap(x: float, multiple: int = 2) -> int:
    """`x` rounded to a positive multiple of `multiple`."""
    return max(multiple, int(round(x / multiple)) * multiple)


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


class WorkingScaler:
    """Full frame -> (BGR, luma) at working resolution, for detection and statistics only
    (not rotated: neither cares). For 8-bit 4:2:0 frames, the common case, each plane is
    resized nearest-neighbour (as PySceneDetect's own downscale samples pixels) and converted
    with OpenCV's video-range I420 conversion, several times cheaper than swscale; other
    formats go through swscale."""

    PLANAR_420 = {"yuv420p", "yuvj420p"}

    def __init__(self, width: int, height: int, working_width: int):
        step = max(1.0, width / working_width)
        self.size = (max(2, int(width / step)) & ~1, max(2, int(height / step)) & ~1)

    def __call__(self, frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.size
        if frame.format.name in self.PLANAR_420:
            planes = [_plane(p, frame.height >> (i > 0), frame.width >> (i > 0)) for i, p in enumerate(frame.planes)]
            small = [cv2.resize(p, (w >> (i > 0), h >> (i > 0)), interpolation=cv2.INTER_NEAREST)
                     for i, p in enumerate(planes)]
            i420 = np.concatenate([p.ravel() for p in small]).reshape(-1, w)
            bgr = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
        else:
            bgr = frame.reformat(width=w, height=h, format="bgr24", interpolation="POINT").to_ndarray()
        return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def _plane(plane, height: int, width: int) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


@dataclass
class StreamFrame:
    index: int
    pts: int
    t: float                  # seconds from the first frame
    key: bool
    small: np.ndarray         # BGR at working resolution (not rotated)
    luma: np.ndarray          # its luma
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
        return read_ahead(self._frames(), READ_AHEAD)

    def _frames(self) -> Iterator[StreamFrame]:
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
                    scale = WorkingScaler(frame.width, frame.height, self.working_width)
                last_pts = pts
                t = float((pts - self.origin_pts) * self.time_base)
                self.last_t = t
                small, luma = scale(frame)
                yield StreamFrame(index, pts, t, bool(frame.key_frame), small, luma, frame)
                index += 1
        except av.error.FFmpegError as exc:
            raise DecodeError(f"decoding stopped at frame {index} ({self.last_t:.2f} s): {exc}") from None


READ_AHEAD = 8
"""Frames decoded (and scaled) ahead of the consumer: FFmpeg and OpenCV release the GIL, so
decoding overlaps the per-frame analysis, while memory stays bounded."""


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def read_ahead(items: Iterator, depth: int) -> Iterator:
    """Yield `items`, produced by a background thread at most `depth` ahead; an exception in
    the producer is raised in the consumer, and a consumer that stops early stops the producer."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Raised(exc))

    worker = threading.Thread(target=produce, name="decode", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is end:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
