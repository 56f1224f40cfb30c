"""Shot boundaries from TransNetV2's per-frame probabilities: hard cuts as frame indices, gradual
transitions (fades, dissolves) as frame spans, and the merge of model cuts with PySceneDetect's
for `scenes.detector: consensus`.

A transition is a run of frames whose probability (the higher of the model's two heads) is
above `threshold`. Measured in presentation time, a run shorter than `transition_min_s` is a
hard cut, placed after the frame the main head rates highest; a longer one is a gradual
transition (a fade or dissolve), widened over the neighbouring frames whose probability stays
above `span_threshold` (hysteresis: the high threshold decides that there is a transition, the
low one how far it reaches, so the faint first and last frames of a dissolve are inside), and
runs whose widened spans meet are one transition (a fade out, black, a fade in). No clip covers
a gradual transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class ShotBoundaries:
    cuts: list[int] = field(default_factory=list)
    """First frame of each shot that follows a hard cut."""
    transitions: list[tuple[int, int]] = field(default_factory=list)
    """[start, end) frames of each gradual transition."""


def shot_boundaries(single: np.ndarray, many: np.ndarray, times: np.ndarray, end_time: float,
                    threshold: float, span_threshold: float, transition_min_s: float) -> ShotBoundaries:
    """Hard cuts and gradual transitions of one video from its per-frame probabilities;
    `times[i]` is frame i's presentation time and `end_time` the end of the last frame."""
    score = np.maximum(single, many)
    n = len(times)
    cuts, spans = [], []
    for start, end in runs_above(score, threshold):
        if (times[end] if end < n else end_time) - times[start] >= transition_min_s:
            spans.append(widen(score, start, end, min(span_threshold, threshold)))
        else:
            cuts.append(start + int(np.argmax(single[start:end])) + 1)
    transitions = merge_overlapping(spans)
    inside = lambda c: any(a <= c <= b for a, b in transitions)  # noqa: E731
    return ShotBoundaries(sorted({c for c in cuts if 0 < c < n and not inside(c)}), transitions)


def runs_above(score: np.ndarray, level: float) -> list[tuple[int, int]]:
    """[start, end) runs of frames whose score is above `level`."""
    above = np.concatenate([[False], score > level, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def widen(score: np.ndarray, start: int, end: int, level: float) -> tuple[int, int]:
    """[start, end) grown over the neighbouring frames whose score stays above `level`."""
    while start > 0 and score[start - 1] > level:
        start -= 1
    while end < len(score) and score[end] > level:
        end += 1
    return start, end


def merge_overlapping(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def merge_cuts(model: ShotBoundaries, content_cuts: Sequence[int], times: np.ndarray, tolerance_s: float,
               rule: str) -> ShotBoundaries:
    """`consensus`: the model's boundaries merged with PySceneDetect's content cuts. A content cut
    within `tolerance_s` of a model cut, or inside (or that close to) a model transition, is the
    same boundary. `union` keeps every boundary either detector found (the model's position
    wins); `both` keeps only hard cuts both found, plus the model's gradual transitions, which
    the content detector cannot see."""
    def near(frame: int, other: int) -> bool:
        return abs(float(times[frame]) - float(times[other])) <= tolerance_s + 1e-9

    def matched(cut: int, cuts: Sequence[int]) -> bool:
        return any(near(cut, c) for c in cuts) or any(
            near(cut, a) or near(cut, min(b, len(times) - 1)) or a <= cut < b for a, b in model.transitions)

    n = len(times)
    content = [c for c in content_cuts if 0 < c < n]
    if rule == "both":
        cuts = [c for c in model.cuts if any(near(c, other) for other in content)]
    else:
        cuts = model.cuts + [c for c in content if not matched(c, model.cuts)]
    return ShotBoundaries(sorted(set(cuts)), list(model.transitions))
