"""Tasks stage: verifiable tasks made by code (NIAH probes, temporal ordering, grounding) and
their SFT/RL exports. The foreign-clip pool spans videos, so it arrives as a side input."""

from __future__ import annotations

from functools import partial
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from vidcorpus import storage
from vidcorpus.config.tasks import TasksConfig
from vidcorpus.pipelines.staging import VideoResult, staging_dir
from vidcorpus.schemas.records import failure_row

PROBES = "probes"


class ForeignPool(beam.PTransform):
    """Results → the foreign-needle pool: the clips in the pool's share (by id hash), at most
    `tasks.niah.foreign_pool_max` per split, the lowest hashes (a distributed top-k, so no step
    holds more than the pool)."""

    def __init__(self, cfg: TasksConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, results):
        from vidcorpus.tasks.niah import foreign_pool_rank

        return (results
                | "Entries" >> beam.FlatMap(pool_entries, self.cfg)
                | "BySplit" >> beam.Map(lambda e: (e["split"], e))
                | "Lowest" >> beam.combiners.Top.SmallestPerKey(self.cfg.niah.foreign_pool_max,
                                                                 key=partial(foreign_pool_rank, seed=self.cfg.seed))
                | "Flatten" >> beam.FlatMap(lambda split_entries: split_entries[1]))


def pool_entries(result: VideoResult, cfg: TasksConfig) -> Iterator[dict[str, Any]]:
    """This video's clips that may serve as foreign needles elsewhere."""
    from vidcorpus.tasks.grounding import captions_by_clip
    from vidcorpus.tasks.niah import foreign_candidate, in_foreign_pool

    if not result["video"]:
        return
    captions = captions_by_clip(result["tables"].get("annotations", []))
    for clip in result["clips"]:
        if in_foreign_pool(clip["clip_id"], cfg):
            yield foreign_candidate(clip, result["video"], cfg, captions.get(clip["clip_id"]))


class MakeTasks(beam.DoFn):
    """A video's result → a new result with its SFT/RL rows and probe files (or a `tasks`
    failures row: a video whose tasks fail keeps its clips). The foreign-needle pool, sorted by
    clip id, is the side input."""

    def __init__(self, cfg: TasksConfig, splits: list[str], work_dir: str):
        self.cfg, self.splits, self.work_dir = cfg, splits, work_dir

    def process(self, result: VideoResult, pool: list[dict[str, Any]]):
        yield make_tasks(result, pool, self.cfg, self.splits, self.work_dir)


def make_tasks(result: VideoResult, pool: list[dict[str, Any]], cfg: TasksConfig, splits: list[str],
               work_dir: str) -> VideoResult:
    """Plan this video's tasks, write its probe media (written mode) and export SFT/RL rows."""
    from vidcorpus.tasks.build import plan_video_tasks
    from vidcorpus.tasks.checks import validate_rows
    from vidcorpus.tasks.export import export_rows
    from vidcorpus.tasks.proxy import proxy_uri
    from vidcorpus.tasks.render import proxied, write_probes

    video = result["video"]
    if not video:
        return result
    try:
        staged = staging_dir(work_dir, video["video_id"])
        proxy = proxy_uri(staged, video, cfg.niah)
        proxies = {video["uri"]: proxy} if cfg.media_mode == "written" and storage.exists(proxy) else {}
        planned = plan_video_tasks(video, result["clips"], result["tables"].get("annotations", []), cfg, pool,
                                   opener=proxied(storage.open_read, proxies),
                                   transcripts=result["tables"].get("transcripts", []))
        for gate in planned.rejected.values():
            Metrics.counter("vidcorpus", f"probes_rejected_{gate.split(':')[0]}").inc()
        probes = {}
        if cfg.media_mode == "written":
            names = [f"{spec.probe_id}.mp4" for spec in planned.probes]
            with storage.local_files([storage.join(staged, name) for name in names]) as paths:
                write_probes(planned.probes, paths, cfg.niah, opener=storage.open_read, proxies=proxies)
            probes = {name: name for name in names}
        sft, rl = export_rows(planned.tasks, cfg)
        tables = {"sft": validate_rows("sft", sft, splits).to_pylist(), "rl": validate_rows("rl", rl, splits).to_pylist()}
        return {**result, "tables": {**result["tables"], **tables}, "probes": probes}
    except Exception as exc:  # noqa: BLE001 - a video whose tasks fail keeps its clips
        return {**result, "failures": result["failures"] + [failure_row(video["uri"], "tasks", exc, video["video_id"])]}
