"""Temporal ordering (VCRBench-style): k clips of one video shown shuffled; put them in order.

The answer is known by construction: the clips' start times. Clips are drawn with a seeded
RNG and must be distinct: at most one clip per `dup_group` (near-duplicate scenes, when the
scoring stage marked them) so that no two shown clips could be swapped without being wrong.
Each clip is a window media reference (its source uri and start/end); clips longer than
`max_clip_s` are shown by their middle part.
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping, Sequence

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.ids import child_id
from vidcorpus.tasks.records import MediaRef, Task, seeded_rng

Clip = dict[str, Any]

ORDER_QUESTION = (
    "The {k} clips above come from one video but are shown in shuffled order. "
    "Put them in the order in which they happen in the video."
)
ORDER_FORMAT = "Answer with the clip numbers as a list in brackets, earliest first."


def _distinct_key(clip: Clip) -> tuple[str, str]:
    group = clip.get("dup_group")
    return ("group", str(group)) if group is not None else ("clip", clip["clip_id"])


def draw_distinct_clips(clips: Sequence[Clip], k: int, rng: random.Random) -> list[Clip] | None:
    """k clips with pairwise different dup groups, in time order; None if there are not enough."""
    chosen, used = [], set()
    for clip in rng.sample(list(clips), len(clips)):
        key = _distinct_key(clip)
        if key not in used:
            used.add(key)
            chosen.append(clip)
            if len(chosen) == k:
                return sorted(chosen, key=lambda c: (float(c["start_s"]), c["clip_id"]))
    return None


def shuffled_presentation(k: int, rng: random.Random) -> list[int]:
    """A permutation of range(k), uniform over all but the identity (presented slot -> time
    rank): Fisher-Yates shuffles with the seeded RNG, drawn again when one comes out in order."""
    identity = list(range(k))
    while True:
        order = identity[:]
        rng.shuffle(order)
        if order != identity:
            return order


def clip_window(clip: Clip, uri: str, max_clip_s: float) -> MediaRef:
    """The clip as a window media reference, cut to its middle `max_clip_s` seconds when longer."""
    start, end = float(clip["start_s"]), float(clip["end_s"])
    if end - start > max_clip_s:
        middle = (start + end) / 2
        start, end = middle - max_clip_s / 2, middle + max_clip_s / 2
    return MediaRef(kind="window", video_id=clip["video_id"], uri=uri, duration_s=end - start,
                    start_s=start, end_s=end, clip_id=clip["clip_id"])


def ordering_difficulty(k: int) -> float:
    """Entropy of the permutation relative to 8 clips: log k! / log 8!."""
    return round(min(1.0, math.lgamma(k + 1) / math.lgamma(9)), 4)


def plan_ordering_tasks(video: Mapping[str, Any], clips: Sequence[Clip], config: TasksConfig) -> list[Task]:
    """Up to `per_video` ordering tasks for one video (distinct clip sets, seeded)."""
    settings = config.ordering
    if not (config.enabled and settings.enabled):
        return []
    video_id = video["video_id"]
    split = video["split"]
    eligible = sorted(
        (c for c in clips if float(c["end_s"]) - float(c["start_s"]) >= settings.min_clip_s),
        key=lambda c: c["clip_id"],
    )
    tasks, seen_sets = [], set()
    for position in range(settings.per_video):
        rng = seeded_rng(config.seed, video_id, "order", position)
        chosen = draw_distinct_clips(eligible, settings.k, rng)
        if chosen is None:
            break
        ids = tuple(c["clip_id"] for c in chosen)
        if ids in seen_sets:
            continue
        seen_sets.add(ids)
        presentation = shuffled_presentation(settings.k, rng)
        shown = [chosen[rank] for rank in presentation]
        truth = [presentation.index(rank) + 1 for rank in range(settings.k)]
        tasks.append(Task(
            task_id=child_id(video_id, "order", position), family="order", kind="order_clips",
            video_id=video_id, video_ids=[video_id], split=split, source_ids=list(ids),
            media=[clip_window(c, video["uri"], settings.max_clip_s) for c in shown],
            media_labels=[f"Clip {i + 1}" for i in range(settings.k)],
            question=ORDER_QUESTION.format(k=settings.k), answer_format=ORDER_FORMAT,
            ground_truth=truth, answer=str(truth), reward_rule="order",
            difficulty=ordering_difficulty(settings.k),
            meta={"k": settings.k, "chronological_clip_ids": list(ids),
                  "shown_clip_ids": [c["clip_id"] for c in shown],
                  "source_spans": [[float(c["start_s"]), float(c["end_s"])] for c in chosen]},
        ))
    return tasks
