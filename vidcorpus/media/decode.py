"""Decode once: one streaming pass over a video's frames at a small working resolution.

Frames are yielded one at a time (nothing accumulates), with their presentation time in seconds
from the first frame, so timestamps stay right under variable frame rate. Geometry (rotation
from the display matrix, non-square pixels) is read from the first frame and applied to every
picture that leaves this module, so all of them are upright at their display aspect.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import av
import cv2
import numpy as np

from vidcorpus.media.errors import DecodeError, WatchdogTimeout


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
    (not rotated: neither cares).

    For 8-bit 4:2:0 frames, the common case, each plane is resized nearest-neighbour (as
    PySceneDetect's own downscale samples pixels) straight into one I420 buffer, converted with
    OpenCV, and the luma is the Y plane mapped to full range: several times cheaper than swscale,
    which serves every other format."""

    PLANAR_420 = {"yuv420p": False, "yuvj420p": True}   # name -> already full range

    def __init__(self, width: int, height: int, working_size: int):
        step = max(1.0, max(width, height) / working_size)
        w, h = self.size = (max(2, int(width / step)) & ~1, max(2, int(height / step)) & ~1)
        self._i420 = np.empty(w * h * 3 // 2, np.uint8)
        quarter = w * h // 4
        self._planes = [self._i420[:w * h].reshape(h, w),
                        self._i420[w * h:w * h + quarter].reshape(h // 2, w // 2),
                        self._i420[w * h + quarter:].reshape(h // 2, w // 2)]

    def __call__(self, frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray]:
        full_range = self.PLANAR_420.get(frame.format.name)
        if full_range is None:
            bgr = frame.reformat(width=self.size[0], height=self.size[1], format="bgr24",
                                 interpolation="POINT").to_ndarray()
            return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for i, (plane, small) in enumerate(zip(frame.planes, self._planes)):
            source = plane_pixels(plane, frame.height >> (i > 0), frame.width >> (i > 0))
            cv2.resize(source, small.shape[::-1], dst=small, interpolation=cv2.INTER_NEAREST)
        bgr = cv2.cvtColor(self._i420.reshape(-1, self.size[0]), cv2.COLOR_YUV2BGR_I420)
        y = self._planes[0]
        return bgr, (y.copy() if full_range else cv2.LUT(y, VIDEO_TO_FULL_RANGE))


VIDEO_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
"""Video-range luma (16-235) to full range (0-255): the grey level a BGR->GRAY conversion gives."""


def plane_pixels(plane, height: int, width: int) -> np.ndarray:
    """A frame plane's pixels as a (height, width) view, without its row padding."""
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

    def __init__(self, container: av.container.InputContainer, working_size: int, threads: int = 0,
                 sar: float = 1.0, timeout_s: float | None = None):
        self.container = container
        self.timeout_s = timeout_s
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = threads
        self.time_base = self.stream.time_base
        self.working_size = working_size
        self.sar = sar
        self.geometry: Geometry | None = None
        self.origin_pts: int | None = None
        self.last_t = 0.0
        self.decoded = 0

    def __iter__(self) -> Iterator[StreamFrame]:
        # The decode thread only decodes (its pace is the pass's pace); scaling runs here.
        scale = None
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        for index, (pts, t, frame) in enumerate(read_ahead(self._decoded(), READ_AHEAD, CHUNK, deadline)):
            if scale is None:
                scale = WorkingScaler(frame.width, frame.height, self.working_size)
            small, luma = scale(frame)
            yield StreamFrame(index, pts, t, bool(frame.key_frame), small, luma, frame)

    def _decoded(self) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """(pts, seconds from the first frame, frame) with strictly increasing pts."""
        last_pts = None
        try:
            for frame in self.container.decode(self.stream):
                pts = frame.pts if frame.pts is not None else (last_pts or 0) + 1
                if last_pts is not None and pts <= last_pts:
                    continue  # duplicate or out-of-order timestamp: keep the stream monotonic
                if self.geometry is None:
                    self.geometry = geometry_of(frame, self.sar)
                    self.origin_pts = pts
                last_pts = pts
                self.last_t = float((pts - self.origin_pts) * self.time_base)
                self.decoded += 1
                yield pts, self.last_t, frame
        except av.error.FFmpegError as exc:
            raise DecodeError(f"decoding stopped at frame {self.decoded} ({self.last_t:.2f} s): {exc}") from None


READ_AHEAD, CHUNK = 2, 4
"""Frames are decoded up to READ_AHEAD chunks of CHUNK frames ahead of the consumer: FFmpeg
releases the GIL, so decoding overlaps the per-frame analysis while memory stays bounded, and
handing frames over in chunks costs a quarter of the thread wake-ups."""


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def read_ahead(items: Iterator, depth: int, chunk: int = 1, deadline: float | None = None) -> Iterator:
    """Yield `items`, produced by a background thread in lists of `chunk`, at most `depth` lists
    ahead; an exception in the producer is raised in the consumer (the unfinished list is
    dropped), and a consumer that stops early stops the producer. Past `deadline` (monotonic
    seconds) the consumer raises WatchdogTimeout, also while the producer is stuck in a read
    (that thread is then left behind; it is a daemon)."""
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
            for part in chunks(items, chunk):
                if not put(part):
                    return
            put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Raised(exc))

    worker = threading.Thread(target=produce, name="decode", daemon=True)
    stuck = False
    try:
        worker.start()
        while True:
            try:
                item = slots.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                stuck = True
                raise WatchdogTimeout("decoding ran past decode.timeout_s (a stuck read or a pathological "
                                      "file); the next run tries this video again") from None
            if deadline is not None and time.monotonic() > deadline:
                stuck = True
                raise WatchdogTimeout("decoding ran past decode.timeout_s; the next run tries this video again")
            if item is end:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield from item
    finally:
        stop.set()
        if worker.ident is not None:  # started (an interrupt may land inside start())
            worker.join(timeout=1.0 if stuck else None)


def chunks(items: Iterator, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last may be shorter)."""
    part = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part
