"""Which decoded frames get a CLIP embedding: a fixed-rate rule on timestamps.

The decode pass streams every frame once; embedding all of them would cost 30x more than
needed, so frames are sampled at `sample_fps`. The rule looks only at timestamps, never at
frame counts, so variable-frame-rate video and re-runs pick the same frames.
"""

from __future__ import annotations

import math
from typing import Optional

# Timestamps come from pts * time_base; a frame meant to sit exactly on a slot edge may land
# a hair below it (29.999999...). This tolerance puts it on the edge it was meant for.
_SLOT_TOLERANCE = 1e-6


def sample_slot(timestamp_s: float, sample_fps: float) -> int:
    """Index of the 1/sample_fps-wide time slot holding this timestamp (slot 0 starts at 0 s)."""
    if sample_fps <= 0:
        raise ValueError(f"sample_fps must be positive, got {sample_fps}")
    return math.floor(timestamp_s * sample_fps + _SLOT_TOLERANCE)


def is_sampled_frame(
    timestamp_s: float, previous_timestamp_s: Optional[float], sample_fps: float
) -> bool:
    """True for the first frame of each time slot.

    `previous_timestamp_s` is the timestamp of the frame decoded just before this one (None for
    the first frame), so a caller needs no state beyond the last timestamp. Slots without any
    frame (gaps in variable-frame-rate video) are simply skipped; at most one frame per slot
    is chosen.
    """
    if previous_timestamp_s is None:
        return True
    return sample_slot(timestamp_s, sample_fps) > sample_slot(previous_timestamp_s, sample_fps)


class FrameSampler:
    """Per-video stateful form of `is_sampled_frame`: call it once per decoded frame, in order."""

    def __init__(self, sample_fps: float):
        sample_slot(0.0, sample_fps)  # validates the rate up front
        self.sample_fps = sample_fps
        self._previous_timestamp_s: Optional[float] = None

    def __call__(self, timestamp_s: float) -> bool:
        chosen = is_sampled_frame(timestamp_s, self._previous_timestamp_s, self.sample_fps)
        self._previous_timestamp_s = timestamp_s
        return chosen
