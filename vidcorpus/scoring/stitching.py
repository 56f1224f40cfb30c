"""Scene clean-up in CLIP space, Panda-70M style: transitions and stitching.

Shot detectors cut on pixel change, so one event filmed in several shots comes out as several
scenes, and fades or wipes come out as short scenes whose two ends show different things.
These pure functions fix both using the embeddings of the frames sampled during decode:

1. transitions: a scene whose first and last frames are far apart in CLIP space is marked
   (or dropped) and never stitched, so it cannot glue two unrelated shots together;
2. stitching: adjacent scenes whose facing boundary frames are close are merged.

Scenes longer than `scenes.max_scene_s` are split afterwards, on frames, by the same
`media.scenes.split_long` that serves builds without CLIP.

All inputs are per video: scene bounds in seconds plus `timestamps` (N,) and unit
`embeddings` (N, D) of the sampled frames, in any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

from vidcorpus.config.clip import ClipConfig
from vidcorpus.scoring.selection import unit_rows

TransitionAction = Literal["mark", "drop"]

# Boundary frames are taken this far inside a scene (as a fraction of its length), as in
# Panda-70M, so that a frame blurred or blended by the cut itself does not speak for the scene.
DEFAULT_BOUNDARY_MARGIN = 0.05


@dataclass(frozen=True, eq=False)
class SceneSummary:
    """What stitching needs to know about one scene.

    `embedding_sum` is the sum of the scene's unit frame embeddings, so merged scenes keep an
    exact mean; the embeddings are None when no sampled frame falls inside the scene.
    `source_scenes` lists the indices of the detector scenes this one was built from.
    """

    start_s: float
    end_s: float
    first_embedding: Optional[np.ndarray]
    last_embedding: Optional[np.ndarray]
    embedding_sum: Optional[np.ndarray]
    num_frames: int
    source_scenes: tuple[int, ...]
    is_transition: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def mean_embedding(self) -> Optional[np.ndarray]:
        """Clip embedding: mean of the frame embeddings, re-normalised."""
        return None if self.embedding_sum is None else _unit(self.embedding_sum)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors of any length."""
    return float(_unit(np.asarray(a, dtype=np.float32)) @ _unit(np.asarray(b, dtype=np.float32)))


def frames_in_span(timestamps: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """Indices of the frames with start_s <= t < end_s, in time order."""
    times = np.asarray(timestamps, dtype=np.float64)
    inside = np.flatnonzero((times >= start_s) & (times < end_s))
    return inside[np.argsort(times[inside], kind="stable")]


def summarize_scene(
    start_s: float,
    end_s: float,
    timestamps: np.ndarray,
    embeddings: np.ndarray,
    source_scenes: tuple[int, ...] = (),
    boundary_margin: float = DEFAULT_BOUNDARY_MARGIN,
) -> SceneSummary:
    """Boundary-frame and mean embeddings of the sampled frames inside [start_s, end_s)."""
    inside = frames_in_span(timestamps, start_s, end_s)
    if len(inside) == 0:
        return SceneSummary(start_s, end_s, None, None, None, 0, tuple(source_scenes))
    times = np.asarray(timestamps, dtype=np.float64)[inside]
    vectors = unit_rows(np.asarray(embeddings)[inside])
    margin = boundary_margin * (end_s - start_s)
    first = int(np.argmin(np.abs(times - (start_s + margin))))
    last = int(np.argmin(np.abs(times - (end_s - margin))))
    return SceneSummary(
        start_s=start_s,
        end_s=end_s,
        first_embedding=vectors[first],
        last_embedding=vectors[last],
        embedding_sum=vectors.sum(axis=0),
        num_frames=len(inside),
        source_scenes=tuple(source_scenes),
    )


def is_transition(scene: SceneSummary, threshold: float) -> bool:
    """True when the scene starts and ends on different content: cosine(first, last) < threshold.

    A scene with fewer than two sampled frames cannot be judged and is not a transition.
    """
    if scene.num_frames < 2 or scene.first_embedding is None or scene.last_embedding is None:
        return False
    return cosine(scene.first_embedding, scene.last_embedding) < threshold


def merge_scenes(earlier: SceneSummary, later: SceneSummary) -> SceneSummary:
    """One scene spanning both: outer boundary frames, pooled frame embeddings."""
    if earlier.embedding_sum is None or later.embedding_sum is None:
        pooled = earlier.embedding_sum if later.embedding_sum is None else later.embedding_sum
    else:
        pooled = earlier.embedding_sum + later.embedding_sum
    return SceneSummary(
        start_s=earlier.start_s,
        end_s=later.end_s,
        first_embedding=earlier.first_embedding if earlier.first_embedding is not None else later.first_embedding,
        last_embedding=later.last_embedding if later.last_embedding is not None else earlier.last_embedding,
        embedding_sum=pooled,
        num_frames=earlier.num_frames + later.num_frames,
        source_scenes=earlier.source_scenes + later.source_scenes,
    )


def _should_stitch(earlier: SceneSummary, later: SceneSummary, threshold: float, tolerance_s: float) -> bool:
    if earlier.is_transition or later.is_transition:
        return False
    if abs(later.start_s - earlier.end_s) > tolerance_s:
        return False
    if earlier.last_embedding is None or later.first_embedding is None:
        return False
    return cosine(earlier.last_embedding, later.first_embedding) >= threshold


def stitch_scenes(
    scenes: Sequence[SceneSummary], threshold: float, adjacency_tolerance_s: float = 1e-3
) -> list[SceneSummary]:
    """Merge runs of adjacent scenes whose facing boundary frames have cosine >= threshold.

    Scenes are taken in time order. Each scene is compared with the end of the event built so
    far, so a slow drift across many shots can merge as long as each cut is a small step.
    Transitions, scenes without sampled frames and scenes separated by a gap stay apart.
    """
    ordered = sorted(scenes, key=lambda scene: (scene.start_s, scene.end_s))
    stitched: list[SceneSummary] = []
    for scene in ordered:
        if stitched and _should_stitch(stitched[-1], scene, threshold, adjacency_tolerance_s):
            stitched[-1] = merge_scenes(stitched[-1], scene)
        else:
            stitched.append(scene)
    return stitched


def plan_scenes(
    scene_bounds: Sequence[tuple[float, float]],
    timestamps: np.ndarray,
    embeddings: np.ndarray,
    *,
    stitch_threshold: float,
    transition_threshold: float,
    transition_action: TransitionAction = "mark",
    boundary_margin: float = DEFAULT_BOUNDARY_MARGIN,
) -> list[SceneSummary]:
    """Detector scenes in, clip spans out: transitions, then stitching.

    Returns the spans in time order; each records the detector scenes it came from and
    whether it is a transition (only present with transition_action='mark').
    """
    if transition_action not in ("mark", "drop"):
        raise ValueError(f"transition_action must be 'mark' or 'drop', got {transition_action!r}")
    summaries = []
    for index, (start_s, end_s) in enumerate(scene_bounds):
        summary = summarize_scene(start_s, end_s, timestamps, embeddings, (index,), boundary_margin)
        summaries.append(replace(summary, is_transition=is_transition(summary, transition_threshold)))
    if transition_action == "drop":
        summaries = [summary for summary in summaries if not summary.is_transition]
    return stitch_scenes(summaries, stitch_threshold)


def plan_scenes_with_config(
    scene_bounds: Sequence[tuple[float, float]],
    timestamps: np.ndarray,
    embeddings: np.ndarray,
    config: ClipConfig,
) -> list[SceneSummary]:
    """`plan_scenes` with the thresholds of the `clip:` config section."""
    return plan_scenes(
        scene_bounds,
        timestamps,
        embeddings,
        stitch_threshold=config.stitch_threshold,
        transition_threshold=config.transition_threshold,
        transition_action=config.transition_action,
    )
