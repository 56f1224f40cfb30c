"""Frames of an MP4 at chosen times, by random access: decord first, PyAV where decord fails.

A frame "at time t" is the frame on screen at t: the last one whose presentation time is at or
before t (seconds from the file's first frame), the first frame for earlier times and the last
for later ones. Both backends answer with the same frame, so a loader can switch between them.

decord comes from the `decord2` wheel (the maintained fork; `pip install vidcorpus[loader]`),
which installs the `decord` module. It indexes the file once and seeks to each asked frame;
PyAV (already a dependency) decodes forward from the key frame before the first time, through
`vidcorpus.tasks.render.SourceVideo`. Pictures are returned as stored (clips and probes are
upright already), RGB uint8, resized to `size` = (height, width) when given, by one OpenCV
area resize for both backends (decord's own resize rejects some sizes), so the two agree.
"""

from __future__ import annotations

import io
from typing import Sequence

import cv2
import numpy as np

from vidcorpus.tasks.render import SourceVideo

BACKENDS = ("auto", "decord", "pyav")
_EPS_S = 1e-4


class FrameReadError(ValueError):
    """A video neither backend could read at the asked times."""


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def frame_indices(starts: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """For each time, the index of the frame on screen then (`starts`: ascending frame times)."""
    indices = np.searchsorted(starts, np.asarray(times, dtype=np.float64) + _EPS_S, side="right") - 1
    return np.clip(indices, 0, len(starts) - 1)


def read_with_decord(data: bytes, times: Sequence[float]) -> np.ndarray:
    import decord

    reader = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=1)
    count = len(reader)
    if count == 0:
        raise FrameReadError("decord found no frames")
    starts = reader.get_frame_timestamp(list(range(count)))[:, 0].astype(np.float64)
    starts -= starts[0]
    batch = reader.get_batch(frame_indices(starts, times).tolist())
    return np.ascontiguousarray(batch.asnumpy())


def read_with_pyav(data: bytes, times: Sequence[float]) -> np.ndarray:
    order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
    ascending = [max(0.0, float(times[i])) for i in order]
    video = SourceVideo("<bytes>", opener=lambda _: io.BytesIO(data))
    try:
        frames = [frame.to_ndarray(format="rgb24") for frame in video.frames_at(ascending)]
    finally:
        video.close()
    out = np.empty((len(times),) + frames[0].shape, dtype=np.uint8) if frames else np.empty((0, 0, 0, 3), np.uint8)
    for position, index in enumerate(order):
        out[index] = frames[position]
    return out


def resized(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Frames at (height, width) = `size` (OpenCV area interpolation); unchanged without a size."""
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    height, width = size
    return np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames])


def read_frames(data: bytes, times: Sequence[float], size: tuple[int, int] | None = None,
                backend: str = "auto") -> tuple[np.ndarray, str]:
    """(frames as a (T, H, W, 3) uint8 array in the order of `times`, the backend that read them).

    `auto` uses decord when it is installed and falls back to PyAV for a file decord cannot open.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown frame backend {backend!r}; expected one of {BACKENDS}")
    if not len(times):
        height, width = size if size else (0, 0)
        return np.empty((0, height, width, 3), dtype=np.uint8), backend
    if backend == "decord" or (backend == "auto" and decord_available()):
        try:
            return resized(read_with_decord(data, times), size), "decord"
        except Exception as error:  # decord raises its own DECORDError or RuntimeError
            if backend == "decord":
                raise FrameReadError(f"decord could not read the video: {error}") from error
    try:
        return resized(read_with_pyav(data, times), size), "pyav"
    except Exception as error:
        raise FrameReadError(f"the video could not be decoded at the asked times: {error}") from error
