"""The build pipeline, on any Beam runner:

    discover → identify → dedupe → scan (probe, decode once) → [CLIP] → segment (scenes,
    keyframes, clips) → [annotate (LLM)] → [tasks] → plan → write tables and shards → manifest

Where several workers share the work, Reshuffles between the heavy stages break fusion, so
decoding, CLIP and LLM calls can scale (and, on Dataflow, run on different workers). A video
whose staged result matches the current config is not processed again, so a killed build
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from vidcorpus import storage
from vidcorpus.config import BuildConfig, config_to_dict
from vidcorpus.pipelines.annotate import Annotate, AnnotateOnWorker
from vidcorpus.pipelines.discover import Identify, discover, pick_one
from vidcorpus.pipelines.embed import EmbedCandidates, text_embeddings
from vidcorpus.pipelines.release import (clear_release, plan_release, table_jobs, write_file_job, write_shard_job,
                                         write_table_job)
from vidcorpus.media.scenes import MODEL_DETECTORS
from vidcorpus.pipelines.scan import Input, Scanned, scan_video, staging_dir
from vidcorpus.pipelines.segment import RESULT, Embeddings, segment_video
from vidcorpus.pipelines.tasks import add_tasks, pool_entries
from vidcorpus.progress import Progress
from vidcorpus.sinks.manifest import MANIFEST, write_manifest

log = logging.getLogger(__name__)
WORK_DIR = ".work"
Result = Dict[str, Any]
"""A video's result (see `video_result`); declared so Beam never guesses a coder for it."""
RESULT_SECTIONS = ("input", "ids", "probe", "decode", "scenes", "keyframes", "clips", "clip", "shards")
CLIP_EXECUTION_KEYS = ("device", "precision", "batch_size", "min_batch_size", "model_copies", "accelerator",
                       "cache_dir")
TRANSNET_EXECUTION_KEYS = ("device", "precision", "batch_windows", "model_copies", "accelerator")


def result_fingerprint(cfg: BuildConfig) -> str:
    """Hash of the config a staged per-video result depends on: not where or how fast CLIP runs,
    so a job resumed on other hardware (or on Dataflow) reuses what is done."""
    sections = {k: v for k, v in config_to_dict(cfg).items() if k in RESULT_SECTIONS}
    sections["clip"] = {k: v for k, v in sections["clip"].items() if k not in CLIP_EXECUTION_KEYS}
    transnet = sections["scenes"]["transnet"]
    sections["scenes"]["transnet"] = {k: v for k, v in transnet.items() if k not in TRANSNET_EXECUTION_KEYS}
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class BuildSummary:
    output: str
    counts: dict[str, Any]
    dataset_hash: str
    skipped: list[str]
    skipped_stages: dict[str, str] = field(default_factory=dict)


class Scan(beam.DoFn):
    """Input → Scanned, or the staged result of an earlier run (resume), or a failure result.

    A staged failure (a video that produced nothing) is final for its config unless
    `retry_failed`: then the video is processed again, for failures that may not recur (a
    storage read error)."""

    def __init__(self, cfg: BuildConfig, work_dir: str, retry_failed: bool = False):
        self.cfg, self.work_dir, self.retry_failed = cfg, work_dir, retry_failed
        self.fingerprint = result_fingerprint(cfg)
        self.scanned = Metrics.counter("vidcorpus", "videos_scanned")
        self.resumed = Metrics.counter("vidcorpus", "videos_resumed")

    def process(self, item: Input):
        staged = load_staged_result(self.work_dir, item.video_id, self.fingerprint)
        if staged is not None and (staged["video"] or not self.retry_failed):
            self.resumed.inc()
            yield beam.pvalue.TaggedOutput("done", staged)
            return
        self.scanned.inc()
        out = scan_video(item, self.cfg, self.work_dir)
        yield out if isinstance(out, Scanned) else beam.pvalue.TaggedOutput("done", stamp(out, self.fingerprint, self.work_dir, item.video_id))


def load_staged_result(work_dir: str, video_id: str, fingerprint: str) -> dict[str, Any] | None:
    uri = storage.join(staging_dir(work_dir, video_id), RESULT)
    if not storage.exists(uri):
        return None
    try:
        result = json.loads(storage.read_bytes(uri))
    except ValueError:
        return None
    return result if result.get("fingerprint") == fingerprint else None


def stamp(result: dict[str, Any], fingerprint: str, work_dir: str, video_id: str) -> dict[str, Any]:
    """Record the config fingerprint on a result and stage it (written last: the done marker)."""
    result["fingerprint"] = fingerprint
    storage.write_bytes(storage.join(staging_dir(work_dir, video_id), RESULT), json.dumps(result, sort_keys=True).encode())
    return result


class Segment(beam.DoFn):
    def __init__(self, cfg: BuildConfig, work_dir: str, text=None):
        self.cfg, self.work_dir, self.text = cfg, work_dir, text
        self.fingerprint = result_fingerprint(cfg)
        self.videos = Metrics.counter("vidcorpus", "videos")
        self.clips = Metrics.counter("vidcorpus", "clips")
        self.failed = Metrics.counter("vidcorpus", "videos_failed")

    def process(self, element):
        scanned, embeddings = element if isinstance(element, tuple) else (element, None)
        result = segment_video(scanned, self.cfg, self.work_dir, embeddings, self.text)
        if result["video"]:
            self.videos.inc()
            self.clips.inc(len(result["clips"]))
        else:
            self.failed.inc()
        yield stamp(result, self.fingerprint, self.work_dir, scanned.item.video_id)


def join_embeddings(element, text):
    """CoGroupByKey output → (Scanned, Embeddings) for videos that have both."""
    _, grouped = element
    for scanned in grouped["scanned"]:
        found = grouped["embeddings"]
        by_index = found[0] if found else {}
        if len(by_index) == len(scanned.candidates):
            yield scanned, Embeddings.of(scanned, by_index, text)
        else:
            yield scanned, None  # a video without candidates has nothing to embed


def pipeline_options(cfg: BuildConfig) -> PipelineOptions:
    from vidcorpus.runners import pipeline_options as runner_options
    return runner_options(cfg.runner.name, cfg.runner.mode, cfg.runner.workers, cfg.dataflow)


def for_runner(cfg: BuildConfig) -> BuildConfig:
    """On Dataflow, the CLIP and TransNetV2 steps carry the GPU resource hint (and nothing else does)."""
    if cfg.runner.name != "dataflow":
        return cfg
    from vidcorpus.runners import clip_resource_hints, gpu_plan_problems, with_clip_accelerator
    clip = with_clip_accelerator(cfg.clip, cfg.dataflow)
    problems = gpu_plan_problems(clip, cfg.runner.name, cfg.dataflow)
    if problems:
        raise ValueError("; ".join(problems))
    scenes = cfg.scenes
    accelerator = clip_resource_hints(cfg.dataflow).get("accelerator")
    if scenes.detector in MODEL_DETECTORS and accelerator and scenes.transnet.accelerator is None:
        scenes = scenes.model_copy(update={"transnet": scenes.transnet.model_copy(update={"accelerator": accelerator})})
    llm = cfg.llm
    if llm.backend == "vllm-worker" and accelerator and llm.vllm.accelerator is None:
        llm = llm.model_copy(update={"vllm": llm.vllm.model_copy(update={"accelerator": accelerator})})
    return cfg.model_copy(update={"clip": clip, "scenes": scenes, "llm": llm})


def skipped_stages(cfg: BuildConfig) -> dict[str, str]:
    """Stages this build leaves out, with the reason (recorded in the manifest)."""
    from vidcorpus.annotators.config import skipped_reason

    skipped = {}
    if not cfg.clip.enabled:
        skipped["clip"] = "clip.enabled is false"
    reason = skipped_reason(cfg.llm)
    if reason:
        skipped["annotate"] = reason
    if not cfg.tasks.enabled:
        skipped["tasks"] = "tasks.enabled is false"
    return skipped


class ReleaseExists(RuntimeError):
    """A finished version is never modified."""


SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def release_paths(output: str, name: str | None, version: str | None) -> tuple[str, str]:
    """(release directory, work directory). A named version lives at `<output>/<name>/<version>`
    and shares `<output>/<name>/.work` (per-video results, LLM cache) with the name's other
    versions, so a new version over more inputs only processes the new videos."""
    if (name is None) != (version is None):
        raise ValueError("--name and --version go together")
    if name is None:
        return output, storage.join(output, WORK_DIR)
    if not SEMVER.match(version):
        raise ValueError(f"--version must be semantic (MAJOR.MINOR.PATCH), got {version!r}")
    return storage.join(output, name, version), storage.join(output, name, WORK_DIR)


def build(input_spec: str, output: str, cfg: BuildConfig, options: PipelineOptions | None = None,
          name: str | None = None, version: str | None = None, retry_failed: bool = False) -> BuildSummary:
    cfg = for_runner(cfg)
    release, work_dir = release_paths(output, name, version)
    if name is not None and storage.exists(storage.join(release, MANIFEST)):
        raise ReleaseExists(f"{release} is a finished release and is never modified; choose a new --version")
    uris, skipped = discover(input_spec, cfg.input)
    if skipped:
        log.info("skipped %d files without a video extension (input.extensions)", len(skipped))
    stages_off = skipped_stages(cfg)
    for stage, reason in stages_off.items():
        log.warning("skipping stage %s: %s", stage, reason)
    clear_release(release)
    with Progress(work_dir, total=len(uris), enabled=cfg.runner.progress):
        pipeline = beam.Pipeline(options=options or pipeline_options(cfg))
        compose(pipeline, uris, release, work_dir, cfg, stages_off, {"name": name, "version": version},
                retry_failed)
        pipeline.run().wait_until_finish()
    from vidcorpus.publish.card import write_card
    from vidcorpus.report import write_report
    write_card(release)
    try:
        write_report(release)
    except Exception as exc:  # noqa: BLE001 - the release is complete; the report can be redone
        log.warning("report.html not written (%s: %s); run `vidcorpus report %s`", type(exc).__name__, exc, release)
    manifest = json.loads(storage.read_bytes(storage.join(release, MANIFEST)))
    return BuildSummary(release, manifest["counts"], manifest["dataset_hash"], skipped, stages_off)


def compose(p: beam.Pipeline, uris: list[str], output: str, work_dir: str, cfg: BuildConfig,
            stages_off: dict[str, str], release: dict[str, Any] | None = None,
            retry_failed: bool = False) -> None:
    identified = (p | "Inputs" >> beam.Create(uris)
                  | "SpreadInputs" >> fusion_break(cfg)
                  | "Identify" >> beam.ParDo(Identify(cfg)).with_outputs("failed", main="ok"))
    unique = (identified.ok
              | "ByContent" >> beam.GroupByKey()
              | "Dedupe" >> beam.FlatMap(pick_one).with_outputs("failed", main="ok"))
    scanned = (unique.ok
               | "SpreadVideos" >> fusion_break(cfg)
               | "Scan" >> beam.ParDo(Scan(cfg, work_dir, retry_failed)).with_outputs("done", main="scanned"))
    done = [scanned.done]
    to_segment = scanned.scanned
    if cfg.scenes.detector in MODEL_DETECTORS:
        from vidcorpus.pipelines.shots import DetectShots
        fingerprint = result_fingerprint(cfg)
        shots = to_segment | "Shots" >> DetectShots(cfg)
        to_segment = shots.scanned
        done.append(shots.done | "StageShotFailures" >> beam.Map(
            lambda r: stamp(r, fingerprint, work_dir, r["failures"][0]["video_id"])))
    text = text_embeddings(cfg)
    with_cuts = to_segment
    if "clip" not in stages_off:
        embeddings = with_cuts | "Embed" >> EmbedCandidates(cfg)
        to_segment = ({"scanned": with_cuts | "KeyScanned" >> beam.Map(lambda s: (s.item.video_id, s)),
                       "embeddings": embeddings}
                      | "JoinEmbeddings" >> beam.CoGroupByKey()
                      | "WithEmbeddings" >> beam.FlatMap(join_embeddings, text))
    segmented = (to_segment
                 | "SpreadScanned" >> fusion_break(cfg)
                 | "Segment" >> beam.ParDo(Segment(cfg, work_dir, text)).with_output_types(Result))
    results = (segmented, *done) | "Videos" >> beam.Flatten()
    if "annotate" not in stages_off:
        results = results | "SpreadForLLM" >> fusion_break(cfg)
        results = (results | "Annotate" >> AnnotateOnWorker(cfg, work_dir) if cfg.llm.backend == "vllm-worker"
                   else results | "Annotate" >> beam.ParDo(Annotate(cfg, work_dir)).with_output_types(Result))
    if "tasks" not in stages_off:
        entries = results | "ForeignPool" >> beam.FlatMap(pool_entries, cfg)
        pool = once(p, "SortPool", entries, sorted, key=lambda e: e["clip_id"])
        results = (results | "Tasks" >> beam.Map(add_tasks, beam.pvalue.AsSingleton(pool), cfg, work_dir)
                   .with_output_types(Result))
    tables = produced_tables(stages_off)
    everything = (results, identified.failed, unique.failed) | "AllResults" >> beam.Flatten()
    plan = once(p, "Plan", everything, plan_release, cfg.shards.max_samples, cfg.shards.max_bytes, tables)
    shards = (plan
              | "ShardJobs" >> beam.FlatMap(lambda pl: pl.shards)
              | "SpreadShards" >> fusion_break(cfg)
              | "WriteShards" >> beam.Map(write_shard_job, output, work_dir))
    files = (plan
             | "FileJobs" >> beam.FlatMap(lambda pl: pl.files)
             | "WriteFiles" >> beam.Map(write_file_job, output, work_dir))
    written_tables = (plan
                      | "TableJobs" >> beam.FlatMap(table_jobs)
                      | "WriteTables" >> beam.Map(write_table_job, output))
    entries = (shards, files, written_tables) | "AllFiles" >> beam.Flatten()
    _ = plan | "Manifest" >> beam.Map(_write_manifest, beam.pvalue.AsList(entries), output, cfg, stages_off,
                                      release or {})


def once(p: beam.Pipeline, label: str, pcoll: beam.PCollection, fn, *args, **kwargs) -> beam.PCollection:
    """A one-element PCollection: `fn(all of pcoll's elements as a list, *args, **kwargs)`, also
    when `pcoll` is empty. A list side input does this in far fewer steps than a ToList
    combiner, which costs about 0.1 s of graph construction and bundle set-up on the local runner."""
    return (p | f"{label}Once" >> beam.Create([None])
            | label >> beam.Map(lambda _, items, *a, **kw: fn(items, *a, **kw), beam.pvalue.AsList(pcoll),
                                *args, **kwargs))


def fusion_break(cfg: BuildConfig) -> beam.PTransform:
    """A Reshuffle where several workers share the work (Dataflow, or the DirectRunner with
    `runner.workers` > 1), so each heavy stage spreads over them. One in-process worker has
    nothing to spread, and there the shuffles would only cost time (about 0.25 s a build)."""
    if cfg.runner.name == "direct" and cfg.runner.workers == 1:
        return Unchanged()
    return beam.Reshuffle()


class Unchanged(beam.PTransform):
    def expand(self, pcoll):
        return pcoll


def produced_tables(stages_off: dict[str, str]) -> tuple[str, ...]:
    tables = ["videos", "clips"]
    if "clip" not in stages_off:
        tables.append("frames")
    if "annotate" not in stages_off:
        tables.append("annotations")
    if "tasks" not in stages_off:
        tables += ["sft", "rl"]
    return (*tables, "failures")


def _write_manifest(plan, files: list[dict[str, Any]], output: str, cfg: BuildConfig,
                    stages_off: dict[str, str], release: dict[str, Any]) -> None:
    extra = {**release, "skipped_stages": stages_off, "usage": plan.usage, "models": models_of(cfg, stages_off)}
    write_manifest(output, config_to_dict(cfg), plan.counts, files, extra)


def models_of(cfg: BuildConfig, stages_off: dict[str, str]) -> dict[str, Any]:
    models: dict[str, Any] = {}
    if "clip" not in stages_off:
        from vidcorpus.scoring.clip import clip_model_tag
        models["clip"] = clip_model_tag(cfg.clip)
    if "annotate" not in stages_off:
        from vidcorpus.annotators.config import resolve_endpoint
        from vidcorpus.annotators.prompts import prompt_versions
        models["llm"] = {name: endpoint.model for name in ("caption", "summary", "qa", "cot", "blind")
                         if (endpoint := resolve_endpoint(cfg.llm, name)) is not None}
        models["prompts"] = {pid: cfg.llm.prompt_versions.get(pid, max(versions))
                             for pid, versions in sorted(prompt_versions().items())}
    return models
