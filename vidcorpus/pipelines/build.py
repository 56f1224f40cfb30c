"""The build pipeline: discover → identify → analyze (probe, decode once, scenes, keyframes,
clips) → plan → write tables and shards → manifest, on any Beam runner."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from vidcorpus import storage
from vidcorpus.config import BuildConfig, config_to_dict
from vidcorpus.pipelines.analyze import Input, analyze_video
from vidcorpus.pipelines.discover import Identify, discover, pick_one
from vidcorpus.pipelines.release import (clear_release, plan_release, table_jobs, write_shard_job,
                                         write_table_job)
from vidcorpus.progress import Progress
from vidcorpus.sinks.manifest import MANIFEST, write_manifest

log = logging.getLogger(__name__)
WORK_DIR = ".work"


class Analyze(beam.DoFn):
    def __init__(self, cfg: BuildConfig, work_dir: str):
        self.cfg, self.work_dir = cfg, work_dir
        self.videos = Metrics.counter("vidcorpus", "videos")
        self.clips = Metrics.counter("vidcorpus", "clips")
        self.failed = Metrics.counter("vidcorpus", "videos_failed")

    def process(self, item: Input):
        result = analyze_video(item, self.cfg, self.work_dir)
        if result["video"]:
            self.videos.inc()
            self.clips.inc(len(result["clips"]))
        else:
            self.failed.inc()
        yield result


@dataclass
class BuildSummary:
    output: str
    counts: dict[str, Any]
    dataset_hash: str
    skipped: list[str]


def pipeline_options(cfg: BuildConfig) -> PipelineOptions:
    return PipelineOptions(runner="DirectRunner", direct_running_mode=cfg.runner.mode,
                           direct_num_workers=cfg.runner.workers)


def build(input_spec: str, output: str, cfg: BuildConfig, options: PipelineOptions | None = None) -> BuildSummary:
    uris, skipped = discover(input_spec, cfg.input)
    if skipped:
        log.info("skipped %d files without a video extension (input.extensions)", len(skipped))
    work_dir = storage.join(output, WORK_DIR)
    clear_release(output)
    progress = Progress(work_dir, total=len(uris), enabled=cfg.runner.progress)
    with progress:
        pipeline = beam.Pipeline(options=options or pipeline_options(cfg))
        compose(pipeline, uris, output, work_dir, cfg)
        result = pipeline.run()
        result.wait_until_finish()
    manifest = _read_manifest(output)
    return BuildSummary(output, manifest["counts"], manifest["dataset_hash"], skipped)


def compose(p: beam.Pipeline, uris: list[str], output: str, work_dir: str, cfg: BuildConfig) -> None:
    identified = (p | "Inputs" >> beam.Create(uris)
                  | "SpreadInputs" >> beam.Reshuffle()
                  | "Identify" >> beam.ParDo(Identify(cfg)).with_outputs("failed", main="ok"))
    unique = (identified.ok
              | "ByContent" >> beam.GroupByKey()
              | "Dedupe" >> beam.FlatMap(pick_one).with_outputs("failed", main="ok"))
    analyzed = (unique.ok
                | "SpreadVideos" >> beam.Reshuffle()
                | "Analyze" >> beam.ParDo(Analyze(cfg, work_dir)))
    plan = ((analyzed, identified.failed, unique.failed)
            | "AllResults" >> beam.Flatten()
            | "Gather" >> beam.combiners.ToList()
            | "Plan" >> beam.Map(plan_release, cfg.shards.max_samples, cfg.shards.max_bytes))
    shards = (plan
              | "ShardJobs" >> beam.FlatMap(lambda pl: pl.shards)
              | "SpreadShards" >> beam.Reshuffle()
              | "WriteShards" >> beam.Map(write_shard_job, output, work_dir))
    tables = (plan
              | "TableJobs" >> beam.FlatMap(table_jobs)
              | "WriteTables" >> beam.Map(write_table_job, output))
    files = ((shards, tables) | "AllFiles" >> beam.Flatten() | "FileList" >> beam.combiners.ToList())
    _ = (plan | "Manifest" >> beam.Map(_write_manifest, beam.pvalue.AsSingleton(files), output, cfg))


def _write_manifest(plan, files: list[dict[str, Any]], output: str, cfg: BuildConfig) -> None:
    write_manifest(output, config_to_dict(cfg), plan.counts, files)


def _read_manifest(output: str) -> dict[str, Any]:
    return json.loads(storage.read_bytes(storage.join(output, MANIFEST)))
