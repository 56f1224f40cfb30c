"""Train/val/test assignment by video id: every clip, task and sample of a video shares its split.

Videos with the same footage (a re-encode, an excerpt; see `scoring.footage`) share the split of
their group's representative: the build records it on the video row, and `video_split` reads it
from there.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping


def split_of(video_id: str, fractions: Mapping[str, float]) -> str:
    """The split whose cumulative fraction first exceeds the video's hash position in [0, 1)."""
    position = int(hashlib.sha256(f"split:{video_id}".encode()).hexdigest()[:12], 16) / 16**12
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if position < total:
            return name
    return list(fractions)[-1]


def video_split(video: Mapping[str, Any], fractions: Mapping[str, float]) -> str:
    """A video record's split: the one the build assigned (near-duplicates grouped), else its id's."""
    return video.get("split") or split_of(video["video_id"], fractions)
