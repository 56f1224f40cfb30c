"""Per-item coins for tasks.

Splits are the build's own: every sample takes the split of its haystack/source video from
`vidcorpus.splits.video_split` (the split on the video row: its near-duplicate group's, else its
id's), as its clips do; foreign needles are drawn only from videos of the same split. `unit_hash` gives other per-item decisions (such as the
foreign-clip pool) a fixed, machine-independent coin.
"""

from __future__ import annotations

import hashlib


def unit_hash(key: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by `key` (and `salt`), the same on every machine."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64

