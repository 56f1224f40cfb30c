"""Planning every task of a video (or of a small corpus) in one call.

`plan_video_tasks` is the per-video unit a pipeline runs after grouping clips and
annotations by video; the foreign-clip pool is the one input that spans videos (a side
input built with `in_foreign_pool` + `foreign_candidate`). `plan_corpus_tasks` does the
grouping itself for in-memory use.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.tasks.grounding import captions_by_clip, plan_grounding_tasks
from vidcorpus.tasks.niah import foreign_candidate, foreign_pool_rank, in_foreign_pool, plan_niah_probes, probe_tasks
from vidcorpus.tasks.ordering import plan_ordering_tasks
from vidcorpus.tasks.records import ProbeSpec, Task
from vidcorpus.tasks.speech import plan_speech_tasks


@dataclass
class PlannedTasks:
    """Probe specs (media to write or reference) and the tasks asked about them and the clips."""

    probes: list[ProbeSpec] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # probe id -> the quality gate it failed

    def extend(self, other: "PlannedTasks") -> None:
        self.probes += other.probes
        self.tasks += other.tasks
        self.rejected.update(other.rejected)


def plan_video_tasks(
    video: Mapping[str, Any],
    clips: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]] = (),
    config: TasksConfig | None = None,
    foreign_pool: Sequence[Mapping[str, Any]] = (),
    opener: Any = None,
    transcripts: Sequence[Mapping[str, Any]] = (),
) -> PlannedTasks:
    """NIAH probes and their questions, ordering, grounding and speech tasks for one video.

    With an `opener` (uri -> path or file), probes go through the needle quality gates, which
    read their sources; without one they are planned only (records without media)."""
    config = config or TasksConfig()
    if not config.enabled:
        return PlannedTasks()
    video_id = video["video_id"]
    clips = [dict(c) for c in clips if c["video_id"] == video_id]
    annotations = [a for a in annotations if a.get("video_id", video_id) == video_id]
    split = video["split"]
    captions = captions_by_clip(annotations)
    same_split_captions = sorted({e["caption"] for e in foreign_pool
                                  if e.get("caption") and e["split"] == split and e["video_id"] != video_id})
    probes, rejected = plan_niah_probes(video, clips, config, foreign_pool), {}
    if opener is not None:
        from vidcorpus.tasks.quality import gate_probes
        probes, rejected = gate_probes(probes, config.niah.gates, opener)
    tasks = [t for probe in probes for t in probe_tasks(probe, config, captions, same_split_captions)]
    tasks += plan_ordering_tasks(video, clips, config)
    tasks += plan_grounding_tasks(video, clips, annotations, config)
    tasks += plan_speech_tasks(video, clips, [t for t in transcripts if t["video_id"] == video_id], config)
    return PlannedTasks(probes=probes, tasks=sorted(tasks, key=lambda t: t.task_id), rejected=rejected)


def build_foreign_pool(
    videos: Mapping[str, Mapping[str, Any]],
    clips: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    config: TasksConfig,
) -> list[dict[str, Any]]:
    """Foreign-needle candidates of a corpus: the hash-selected share of its clips, at most
    `foreign_pool_max` per split (the lowest hashes), as the pipeline's `ForeignPool` picks them."""
    captions = captions_by_clip(annotations)
    entries = sorted((foreign_candidate(c, videos[c["video_id"]], config, captions.get(c["clip_id"]))
                      for c in clips if c["video_id"] in videos and in_foreign_pool(c["clip_id"], config)),
                     key=lambda e: foreign_pool_rank(e, config.seed))
    taken: Counter = Counter()
    pool = []
    for entry in entries:
        taken[entry["split"]] += 1
        if taken[entry["split"]] <= config.niah.foreign_pool_max:
            pool.append(entry)
    return sorted(pool, key=lambda e: e["clip_id"])


def plan_corpus_tasks(
    videos: Sequence[Mapping[str, Any]],
    clips: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]] = (),
    config: TasksConfig | None = None,
) -> PlannedTasks:
    """Every video's tasks, for corpora that fit in memory (tests, small local builds)."""
    config = config or TasksConfig()
    by_id = {v["video_id"]: v for v in videos}
    clips_of: dict[str, list] = defaultdict(list)
    annotations_of: dict[str, list] = defaultdict(list)
    for clip in clips:
        clips_of[clip["video_id"]].append(clip)
    video_of_clip = {c["clip_id"]: c["video_id"] for c in clips}
    for annotation in annotations:
        annotations_of[annotation.get("video_id") or video_of_clip.get(annotation.get("clip_id"))].append(annotation)
    pool = build_foreign_pool(by_id, clips, annotations, config)
    planned = PlannedTasks()
    for video_id in sorted(by_id):
        planned.extend(plan_video_tasks(by_id[video_id], clips_of[video_id], annotations_of[video_id], config, pool))
    return planned
