"""WebDataset writer: tar shards of samples (`<key>.<ext>` members), byte-identical per input.

Member times, owners and modes are fixed, and members are written in key order, so a shard
depends only on its samples.
"""

from __future__ import annotations

from typing import Iterable

import webdataset as wds

from vidcorpus import storage


def write_shard(samples: Iterable[dict[str, bytes | str]], uri: str) -> int:
    """Write samples (each a dict with `__key__` and extension -> bytes) to one tar; returns the count."""
    count = 0
    with storage.open_write(uri) as f:
        writer = wds.TarWriter(f, user="vidcorpus", group="vidcorpus", mtime=0, encoder=False)
        for sample in samples:
            writer.write(sample)
            count += 1
        writer.close()
    return count


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"
