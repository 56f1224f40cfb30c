"""Tasks stage: verifiable tasks made by code (NIAH probes, temporal ordering, grounding) and
their SFT/RL exports. The foreign-clip pool spans videos, so it arrives as a side input."""

from __future__ import annotations

from typing import Any, Iterator

from apache_beam.metrics import Metrics

from vidcorpus import storage
from vidcorpus.config import BuildConfig
from vidcorpus.pipelines.scan import staging_dir
from vidcorpus.schemas.records import failure_row

PROBES = "probes"


def pool_entries(result: dict[str, Any], cfg: BuildConfig) -> Iterator[dict[str, Any]]:
    """This video's clips that may serve as foreign needles elsewhere."""
    from vidcorpus.tasks.grounding import captions_by_clip
    from vidcorpus.tasks.niah import foreign_candidate, in_foreign_pool

    if not result["video"]:
        return
    captions = captions_by_clip(result["tables"].get("annotations", []))
    for clip in result["clips"]:
        if in_foreign_pool(clip["clip_id"], cfg.tasks):
            yield foreign_candidate(clip, result["video"], cfg.tasks, captions.get(clip["clip_id"]))


def add_tasks(result: dict[str, Any], pool: list[dict[str, Any]], cfg: BuildConfig, work_dir: str) -> dict[str, Any]:
    """Plan this video's tasks, write its probe media (written mode) and export SFT/RL rows.
    `pool` is the corpus's foreign-needle pool, sorted by clip id."""
    from vidcorpus.tasks.build import plan_video_tasks
    from vidcorpus.tasks.export import export_rows
    from vidcorpus.tasks.render import render_probe
    from vidcorpus.tasks.schemas import validate_rows

    video = result["video"]
    if not video:
        return result
    try:
        planned = plan_video_tasks(video, result["clips"], result["tables"].get("annotations", []), cfg.tasks, pool,
                                   opener=storage.open_read)
        for gate in planned.rejected.values():
            Metrics.counter("vidcorpus", f"probes_rejected_{gate.split(':')[0]}").inc()
        probes = {}
        if cfg.tasks.media_mode == "written":
            staged = staging_dir(work_dir, video["video_id"])
            for spec in planned.probes:
                name = f"{spec.probe_id}.mp4"
                storage.write_bytes(storage.join(staged, name), render_probe(spec, cfg.tasks.niah, opener=storage.open_read))
                probes[name] = name
        sft, rl = export_rows(planned.tasks, cfg.tasks)
        splits = list(cfg.shards.splits)
        result["tables"]["sft"] = validate_rows("sft", sft, splits).to_pylist()
        result["tables"]["rl"] = validate_rows("rl", rl, splits).to_pylist()
        result["probes"] = probes
    except Exception as exc:  # noqa: BLE001 - a video whose tasks fail keeps its clips
        result["failures"].append(failure_row(video["uri"], "tasks", exc, video["video_id"]))
    return result
