"""Keyframes from the single decode pass.

While frames stream by, the sharpest usable frame of each short time slot
(`keyframes.candidates_per_s`) is kept as a candidate: its full-resolution picture is
JPEG-encoded at keyframe size into a spool file, so memory stays flat whatever the video's
length. After scenes are final, `select_uniform` picks k candidates spread over each scene,
skipping black and blurred frames.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Sequence

import av
import cv2

from vidcorpus.config.build import KeyframesConfig
from vidcorpus.media.decode import Geometry, upright
from vidcorpus.media.framestats import FrameStats


@dataclass(frozen=True)
class Candidate:
    index: int
    t: float
    brightness: float
    sharpness: float
    usable: bool
    offset: int     # where its JPEG lies in the spool
    length: int


class CandidateSpool:
    """Keeps the best frame per 1/candidates_per_s bucket; buckets also close at scene cuts.

    A closed bucket's picture is scaled and JPEG-encoded on a helper thread (swscale and
    libjpeg release the GIL, so this overlaps the decode pass); results are spooled in bucket
    order, so offsets and bytes do not depend on timing.
    """

    def __init__(self, cfg: KeyframesConfig, spool: IO[bytes]):
        self.cfg = cfg
        self.spool = spool
        self._spooled = 0   # bytes written: the next JPEG's offset (write-only streams have no tell)
        self.candidates: list[Candidate] = []
        self._bucket: tuple[int, int] | None = None
        self._best: tuple[tuple, int, float, FrameStats, av.VideoFrame] | None = None
        self._scene = 0
        self._geometry: Geometry | None = None
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyframes",
                                           initializer=lower_thread_priority)
        self._pending: deque[tuple[Future, tuple]] = deque()

    def usable(self, stats: FrameStats) -> bool:
        return stats.brightness >= self.cfg.black_brightness and stats.sharpness >= self.cfg.blur_sharpness

    def offer(self, index: int, t: float, stats: FrameStats, frame: av.VideoFrame, geometry: Geometry) -> None:
        self._geometry = geometry
        bucket = (self._scene, int(t * self.cfg.candidates_per_s))
        if bucket != self._bucket:
            self._close()
            self._bucket = bucket
        rank = (self.usable(stats), stats.sharpness)
        if self._best is None or rank > self._best[0]:
            self._best = (rank, index, t, stats, frame)

    def cut(self) -> None:
        """A scene starts at the next offered frame: never share a bucket across a cut."""
        self._close()
        self._bucket = None
        self._scene += 1

    def finish(self) -> list[Candidate]:
        self._close()
        self._spool_done(wait=True)
        self._encoder.shutdown()
        return self.candidates

    def _close(self) -> None:
        if self._best is not None:
            (usable, _), index, t, stats, frame = self._best
            job = self._encoder.submit(self._jpeg, frame, self._geometry)
            self._pending.append((job, (index, t, stats.brightness, stats.sharpness, usable)))
            self._best = None
        self._spool_done(wait=len(self._pending) > PENDING_LIMIT)

    def _jpeg(self, frame: av.VideoFrame, geometry: Geometry) -> bytes:
        size = geometry.scaled(longest=self.cfg.max_size)
        return encode_jpeg(upright(frame, geometry, size, fmt="bgr24", interpolation="AREA"), self.cfg.jpeg_quality)

    def _spool_done(self, wait: bool) -> None:
        """Append finished JPEGs in bucket order (all of them when `wait`)."""
        while self._pending and (wait or self._pending[0][0].done()):
            job, (index, t, brightness, sharpness, usable) = self._pending.popleft()
            jpeg = job.result()
            self.candidates.append(Candidate(index, t, brightness, sharpness, usable, self._spooled, len(jpeg)))
            self.spool.write(jpeg)
            self._spooled += len(jpeg)


PENDING_LIMIT = 4
"""Closed buckets whose pictures may wait for encoding; bounds the full frames held."""

BACKGROUND_NICENESS = 10


def lower_thread_priority() -> None:
    """Run the calling thread at a lower priority (Linux, where niceness is per thread).

    Candidate JPEGs are off the decode pass's critical path: at a lower priority they take the
    cycles that frame-threaded decoding leaves idle instead of competing with it. Elsewhere, or
    if refused, the thread runs as it was.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
    except OSError:
        pass


def encode_jpeg(bgr, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def select_uniform(candidates: Sequence[Candidate], start_s: float, end_s: float, k: int) -> list[tuple[Candidate, float]]:
    """Up to k candidates, one per equal segment of [start_s, end_s): the sharpest usable frame of
    each segment (nearest the segment centre on ties), with a score in [0, 1]. Segments holding only
    black or blurred frames give none, unless the whole clip has nothing better."""
    inside = [c for c in candidates if start_s <= c.t < end_s]
    if not inside:
        return []
    top = max(c.sharpness for c in inside) or 1.0
    width = (end_s - start_s) / k
    chosen = []
    for i in range(k):
        lo, hi = start_s + i * width, start_s + (i + 1) * width
        segment = [c for c in inside if lo <= c.t < hi]
        if not segment:
            continue
        centre = (lo + hi) / 2
        best = max(segment, key=lambda c: (c.usable, c.sharpness, -abs(c.t - centre), -c.index))
        chosen.append((best, (best.sharpness / top) if best.usable else 0.0))
    if any(c.usable for c, _ in chosen):
        return [(c, s) for c, s in chosen if c.usable]
    return chosen[:1]  # nothing usable: one frame still shows what the clip is
