"""Train/val/test assignment by video id: every clip, task and sample of a video shares its split."""

from __future__ import annotations

import hashlib
from typing import Mapping


def split_of(video_id: str, fractions: Mapping[str, float]) -> str:
    """The split whose cumulative fraction first exceeds the video's hash position in [0, 1)."""
    position = int(hashlib.sha256(f"split:{video_id}".encode()).hexdigest()[:12], 16) / 16**12
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if position < total:
            return name
    return list(fractions)[-1]
