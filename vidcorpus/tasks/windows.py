"""Contiguous runs of clips and windows inside them: the haystacks and grounding contexts.

Scene clips of one video normally tile it, but filters upstream may drop some; a window
shown to a model must never jump over a gap, so windows are placed inside runs of clips
that follow each other without one.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

Clip = dict[str, Any]
GAP_TOLERANCE_S = 0.05


def contiguous_runs(clips: Sequence[Clip], gap_tolerance_s: float = GAP_TOLERANCE_S) -> list[list[Clip]]:
    """Clips of one video grouped into time-ordered runs without gaps between neighbours."""
    runs: list[list[Clip]] = []
    for clip in sorted(clips, key=lambda c: (float(c["start_s"]), c["clip_id"])):
        if runs and float(clip["start_s"]) - float(runs[-1][-1]["end_s"]) <= gap_tolerance_s:
            runs[-1].append(clip)
        else:
            runs.append([clip])
    return runs


def run_span(run: Sequence[Clip]) -> tuple[float, float]:
    return float(run[0]["start_s"]), float(run[-1]["end_s"])


def clips_overlapping(run: Sequence[Clip], start_s: float, end_s: float) -> list[Clip]:
    """Clips of `run` that share time with [start_s, end_s)."""
    return [c for c in run if float(c["start_s"]) < end_s and float(c["end_s"]) > start_s]


def window_covering(
    run: Sequence[Clip], cover_start_s: float, cover_end_s: float, length_s: float, rng: random.Random
) -> tuple[float, float] | None:
    """A window of `length_s` inside `run` containing [cover_start_s, cover_end_s).

    The window's offset is drawn from `rng` so the covered event is not always centred; when
    the run is shorter than `length_s` the whole run is the window. None if the run does not
    contain the span.
    """
    run_start, run_end = run_span(run)
    if cover_start_s < run_start - 1e-6 or cover_end_s > run_end + 1e-6:
        return None
    if run_end - run_start <= length_s:
        return run_start, run_end
    length_s = max(length_s, cover_end_s - cover_start_s)
    lowest = max(run_start, cover_end_s - length_s)
    highest = min(cover_start_s, run_end - length_s)
    start = lowest if highest <= lowest else rng.uniform(lowest, highest)
    return start, min(run_end, start + length_s)
