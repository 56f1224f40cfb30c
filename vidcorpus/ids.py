"""Content identity: a video's id comes from its bytes, never its path.

`sampled` (default) hashes the file size plus three 1 MiB windows (start, middle, end): it reads
3 MiB of any file, and two encodes differing anywhere in their container header, index or
either end get different ids. `full` hashes every byte (use it when inputs may differ only in
the middle, at the cost of one extra read of each file). Files up to 3 MiB are always hashed whole.
Clip, annotation, task and sample ids extend their parent's id with their position, so re-runs
repeat them. A video's split and every per-item coin also come from ids, never from chance.
"""

from __future__ import annotations

import hashlib
from typing import IO, Mapping

from vidcorpus import storage

WINDOW = 1 << 20
ID_HEX = 16


def video_id(uri: str, size: int, mode: str = "sampled") -> str:
    with storage.open_read(uri) as f:
        digest = _full(f) if mode == "full" or size <= 3 * WINDOW else _sampled(f, size)
    return "v" + digest[:ID_HEX]


def _full(f: IO[bytes]) -> str:
    h = hashlib.sha256(b"full:")
    for chunk in iter(lambda: f.read(WINDOW * 8), b""):
        h.update(chunk)
    return h.hexdigest()


def _sampled(f: IO[bytes], size: int) -> str:
    h = hashlib.sha256(f"sampled:{size}:".encode())
    for offset in (0, (size - WINDOW) // 2, size - WINDOW):
        f.seek(offset)
        h.update(f.read(WINDOW))
    return h.hexdigest()


def clip_id(vid: str, index: int) -> str:
    return f"{vid}_{index:04d}"



def child_id(parent: str, kind: str, position: int) -> str:
    """Deterministic id of the `position`-th `kind` child of `parent` (no dots, sortable)."""
    return f"{parent}_{kind}_{position:04d}"


def split_of(video_id: str, fractions: Mapping[str, float]) -> str:
    """The split whose cumulative fraction first exceeds the video's hash position in [0, 1):
    every clip, task and sample of a video shares its split."""
    position = int(hashlib.sha256(f"split:{video_id}".encode()).hexdigest()[:12], 16) / 16**12
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if position < total:
            return name
    return list(fractions)[-1]


def unit_hash(key: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by `key` (and `salt`), the same on every machine: the
    coin for per-item decisions such as the foreign-clip pool."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
