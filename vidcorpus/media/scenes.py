"""Scene detection: PySceneDetect detectors fed frame by frame from the single decode pass,
then the cut list turned into scenes (short ones merged, over-long ones split)."""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
from scenedetect.common import FrameTimecode
from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector, ThresholdDetector

from vidcorpus.config.build import ScenesConfig
from vidcorpus.media.framestats import mean_abs_difference


class OpenCVFrameScore:
    """For ContentDetector and its subclass AdaptiveDetector: the library's own frame score,
    with each mean absolute difference summed by OpenCV (exact integer sums, so the same score)
    rather than through NumPy int32 copies, which cost half the detector's time per
    working-size frame. A test holds scores and cuts to the library's."""

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_img: np.ndarray) -> float:
        if self.stats_manager is not None:  # the library's path records every component
            return super()._calculate_frame_score(timecode, frame_img)
        hue, sat, lum = cv2.split(cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV))
        edges = self._detect_edges(lum) if self._weights.delta_edges > 0.0 else None
        last, self._last_frame = self._last_frame, ContentDetector._FrameData(hue, sat, lum, edges)
        if last is None:
            return 0.0
        deltas = (mean_abs_difference(hue, last.hue), mean_abs_difference(sat, last.sat),
                  mean_abs_difference(lum, last.lum),
                  0.0 if edges is None or last.edges is None else mean_abs_difference(edges, last.edges))
        return sum(d * w for d, w in zip(deltas, self._weights, strict=True)) / sum(abs(w) for w in self._weights)


class FastContentDetector(OpenCVFrameScore, ContentDetector):
    pass


class FastAdaptiveDetector(OpenCVFrameScore, AdaptiveDetector):
    pass


DETECTORS = {
    "content": FastContentDetector,
    "adaptive": FastAdaptiveDetector,
    "threshold": ThresholdDetector,
    "hash": HashDetector,
    "histogram": HistogramDetector,
}
THRESHOLD_ARG = {"adaptive": "adaptive_threshold"}
MODEL_DETECTORS = ("transnetv2", "consensus")
"""Detectors whose cuts come (also) from TransNetV2 after the decode pass."""
IN_PASS_DETECTOR = {"transnetv2": None, "consensus": "content"}
"""The PySceneDetect detector that runs during the pass for each model detector (None: none)."""


class SceneCutter:
    """Wraps one PySceneDetect detector; frames are pushed in decode order, cuts come back as
    frame indices (the first frame of each new scene). With `transnetv2` it finds nothing: the
    model's cuts come after the pass."""

    def __init__(self, cfg: ScenesConfig, fps: float):
        self.fps = fps if fps and fps > 0 else 25.0
        self.cuts: list[int] = []
        self._last = 0
        name = IN_PASS_DETECTOR.get(cfg.detector, cfg.detector)
        self.detector = None if name is None else DETECTORS[name](**self._arguments(cfg, name))

    def _arguments(self, cfg: ScenesConfig, name: str) -> dict:
        kwargs = {"min_scene_len": max(1, math.ceil(cfg.min_scene_s * self.fps))}
        if cfg.threshold is not None:
            kwargs[THRESHOLD_ARG.get(name, "threshold")] = cfg.threshold
        if name == "threshold":
            kwargs["add_final_scene"] = True
        return kwargs

    def push(self, index: int, bgr: np.ndarray) -> list[int]:
        self._last = index
        if self.detector is None:
            return []
        found = [tc.frame_num for tc in self.detector.process_frame(FrameTimecode(index, self.fps), bgr)]
        self.cuts.extend(found)
        return found

    def finish(self) -> list[int]:
        if self.detector is None:
            return []
        found = [tc.frame_num for tc in self.detector.post_process(FrameTimecode(self._last, self.fps))]
        self.cuts.extend(found)
        return found


def plan_scenes(cuts: Sequence[int], times: Sequence[float], end_time: float,
                min_scene_s: float, max_scene_s: float | None,
                gaps: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Scenes as [start_frame, end_frame) from cut frame indices, outside the `gaps` (gradual
    transitions, [start, end) frames), which no scene covers.

    `times[i]` is frame i's time in seconds and `end_time` the end of the last frame, so
    durations are measured in seconds and stay right under variable frame rate. Between two
    gaps, a stretch shorter than `min_scene_s` is dropped; a video that is all transition is
    kept whole.
    """
    n = len(times)
    scenes = []
    for a, b in outside(gaps, n):
        bounds = sorted({c for c in cuts if a < c < b})
        region = _merge_short(list(zip([a, *bounds], [*bounds, b])), times, end_time, min_scene_s)
        if gaps and len(region) == 1 and _span(region[0], times, end_time) < min_scene_s:
            continue
        scenes += region
    scenes = scenes or [(0, n)]
    return [part for scene in scenes for part in split_long(scene, times, end_time, max_scene_s)]


def outside(gaps: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The [start, end) stretches of [0, n) that no gap covers."""
    stretches, start = [], 0
    for a, b in sorted(gaps):
        if a > start:
            stretches.append((start, min(a, n)))
        start = max(start, b)
    if start < n:
        stretches.append((start, n))
    return [(a, b) for a, b in stretches if b > a]


def _span(scene: tuple[int, int], times: Sequence[float], end_time: float) -> float:
    start, end = scene
    return (times[end] if end < len(times) else end_time) - times[start]


def _merge_short(scenes: list[tuple[int, int]], times, end_time, min_s: float) -> list[tuple[int, int]]:
    """Fold each scene shorter than `min_s` into its predecessor (the first into its successor)."""
    merged: list[tuple[int, int]] = []
    for scene in scenes:
        if merged and _span(scene, times, end_time) < min_s:
            merged[-1] = (merged[-1][0], scene[1])
        elif merged and _span(merged[-1], times, end_time) < min_s:
            merged[-1] = (merged[-1][0], scene[1])
        else:
            merged.append(scene)
    return merged


def split_long(scene: tuple[int, int], times, end_time, max_s: float | None) -> list[tuple[int, int]]:
    """Equal parts (in seconds) no longer than `max_s` (no limit when None), each cut at the
    first frame at or after its boundary."""
    if not max_s:
        return [scene]
    span = _span(scene, times, end_time)
    parts = math.ceil(span / max_s - 1e-9)
    if parts <= 1:
        return [scene]
    start, end = scene
    t0 = times[start]
    inner = [int(np.searchsorted(times, t0 + span * i / parts, side="left")) for i in range(1, parts)]
    edges = [start, *sorted({min(max(c, start + 1), end - 1) for c in inner}), end]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
