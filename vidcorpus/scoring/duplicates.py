"""Clip embeddings and near-duplicate groups within one video.

Tasks built later (ordering, needle-in-a-haystack, "which clip shows ...") must never ask a
model to tell apart two clips a viewer could not tell apart, e.g. the same static shot cut in
two by an ad break. Each clip gets the id of its duplicate group; clips in one group are
interchangeable and later stages pair clips only across groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from vidcorpus.scoring.selection import unit_rows

# Similarities are computed for this many clips at a time, so a two-hour film with thousands
# of clips never builds the full N x N matrix.
_BLOCK_ROWS = 512


def clip_embedding(frame_embeddings: np.ndarray) -> np.ndarray:
    """A clip's embedding: mean of its unit frame embeddings, re-normalised (float32, (D,))."""
    vectors = unit_rows(frame_embeddings)
    if len(vectors) == 0:
        raise ValueError("a clip embedding needs at least one frame embedding")
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def _find(parent: list[int], node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def duplicate_groups(clip_embeddings: Sequence[Optional[np.ndarray]], threshold: float) -> list[int]:
    """For each clip, the index of the first clip of its near-duplicate group.

    Two clips are near-duplicates when their embeddings have cosine >= threshold; groups are
    the connected components of that relation (if A~B and B~C, all three share a group, the
    cautious choice for task building). Clips without an embedding (None) are their own group.
    """
    present = [i for i, vector in enumerate(clip_embeddings) if vector is not None]
    parent = list(range(len(clip_embeddings)))
    if len(present) > 1:
        vectors = unit_rows(np.stack([np.asarray(clip_embeddings[i]) for i in present]))
        for block_start in range(0, len(present), _BLOCK_ROWS):
            similarity = vectors[block_start : block_start + _BLOCK_ROWS] @ vectors.T
            rows, cols = np.nonzero(similarity >= threshold)
            for row, col in zip(rows + block_start, cols):
                if col > row:
                    a, b = _find(parent, present[row]), _find(parent, present[col])
                    parent[max(a, b)] = min(a, b)
    return [_find(parent, i) for i in range(len(clip_embeddings))]


def duplicate_group_ids(
    clip_ids: Sequence[str], clip_embeddings: Sequence[Optional[np.ndarray]], threshold: float
) -> list[str]:
    """For each clip, the clip_id of the earliest clip (in the order given) of its group."""
    if len(clip_ids) != len(clip_embeddings):
        raise ValueError(f"{len(clip_ids)} clip ids but {len(clip_embeddings)} embeddings")
    return [clip_ids[root] for root in duplicate_groups(clip_embeddings, threshold)]
