"""Keyframe selection in CLIP space: novelty (`diverse`) and text relevance (`query`).

Both are pure numpy functions over one clip's sampled frames: `timestamps` (N,) in seconds and
`embeddings` (N, D), one row per frame. They return `KeyframeChoice`s in time order, each with
the mode that chose it and a score, so a reader of the corpus can tell why a frame is there.
(`uniform` keyframes need no embeddings and are chosen elsewhere.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np

EmbeddingMode = Literal["diverse", "query"]


@dataclass(frozen=True)
class KeyframeChoice:
    """One chosen frame: `position` indexes the arrays the selector was given."""

    position: int
    timestamp_s: float
    mode: str
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _check_frames(timestamps: np.ndarray, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(timestamps, dtype=np.float64)
    vectors = unit_rows(embeddings)
    if times.ndim != 1 or len(times) != len(vectors):
        raise ValueError(f"need one timestamp per embedding row, got {times.shape} and {vectors.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return times, vectors


def select_diverse_keyframes(
    timestamps: np.ndarray, embeddings: np.ndarray, k: int, threshold: float
) -> list[KeyframeChoice]:
    """Frames that look new: cosine to the last chosen frame below `threshold` (ShareGPT4Video).

    Walking the clip in time order, the first frame is always a candidate and each later frame
    becomes one when it differs enough from the previous candidate. Score is novelty,
    1 - cosine to the previous candidate (1.0 for the first frame). A static clip yields one
    keyframe; when more than `k` frames qualify, the `k` most novel are kept (ties: earlier).
    """
    times, vectors = _check_frames(timestamps, embeddings, k)
    if len(times) == 0:
        return []
    order = np.argsort(times, kind="stable")
    candidates: list[tuple[int, float]] = [(int(order[0]), 1.0)]
    last = vectors[order[0]]
    for position in order[1:]:
        similarity = float(vectors[position] @ last)
        if similarity < threshold:
            candidates.append((int(position), 1.0 - similarity))
            last = vectors[position]
    if len(candidates) > k:
        ranked = sorted(range(len(candidates)), key=lambda i: (-candidates[i][1], i))
        candidates = [candidates[i] for i in sorted(ranked[:k])]
    return [KeyframeChoice(p, float(times[p]), "diverse", float(s)) for p, s in candidates]


def query_relevance(embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Per-frame cosine to the best-matching prompt, (N,)."""
    texts = unit_rows(text_embeddings)
    if len(texts) == 0:
        raise ValueError("query selection needs at least one text embedding")
    return (unit_rows(embeddings) @ texts.T).max(axis=1)


def select_query_keyframes(
    timestamps: np.ndarray,
    embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    k: int,
    coverage_weight: float = 0.5,
    span: Optional[tuple[float, float]] = None,
) -> list[KeyframeChoice]:
    """k frames that match the prompts and are spread over the clip (TiFRe / DATE style).

    Greedy: each step takes the frame maximising
        relevance (min-max scaled within the clip to [0, 1])
        + coverage_weight * min(1, distance to the nearest chosen frame / (duration / k)),
    so the first pick is the most relevant frame and later picks trade relevance against
    crowding, with full credit once a frame is an even share of the clip away from the rest.
    `span` is the clip's (start_s, end_s); without it the frames' own extent is used. Score is
    the raw cosine to the best prompt. Ties go to the earlier frame.
    """
    times, vectors = _check_frames(timestamps, embeddings, k)
    if len(times) == 0:
        return []
    relevance = query_relevance(vectors, text_embeddings)
    spread = float(relevance.max() - relevance.min())
    scaled = (relevance - relevance.min()) / spread if spread > 0 else np.zeros_like(relevance)
    start, end = span if span is not None else (float(times.min()), float(times.max()))
    even_gap = max(end - start, 0.0) / k
    chosen: list[int] = []
    nearest = np.full(len(times), np.inf)
    for _ in range(min(k, len(times))):
        if chosen and even_gap > 0:
            coverage = np.minimum(1.0, nearest / even_gap)
        else:
            coverage = np.zeros(len(times))
        objective = scaled + coverage_weight * coverage
        objective[chosen] = -np.inf
        pick = int(np.argmax(objective))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.abs(times - times[pick]))
    chosen.sort(key=lambda p: (times[p], p))
    return [KeyframeChoice(p, float(times[p]), "query", float(relevance[p])) for p in chosen]


def select_keyframes_by_embedding(
    mode: EmbeddingMode,
    timestamps: np.ndarray,
    embeddings: np.ndarray,
    k: int,
    *,
    diverse_threshold: float = 0.9,
    text_embeddings: Optional[np.ndarray] = None,
    coverage_weight: float = 0.5,
    span: Optional[tuple[float, float]] = None,
) -> list[KeyframeChoice]:
    """Dispatch on the configured `keyframes.mode` for the modes that need embeddings."""
    if mode == "diverse":
        return select_diverse_keyframes(timestamps, embeddings, k, diverse_threshold)
    if mode == "query":
        if text_embeddings is None:
            raise ValueError("keyframe mode 'query' needs text_embeddings (see embed_text_prompts)")
        return select_query_keyframes(timestamps, embeddings, text_embeddings, k, coverage_weight, span)
    raise ValueError(f"unknown embedding keyframe mode {mode!r}; expected 'diverse' or 'query'")
