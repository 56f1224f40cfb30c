"""The build pipeline, on any Beam runner:

    discover → identify → dedupe → scan (probe, decode once) → [CLIP] → segment (scenes,
    keyframes, clips) → group near-duplicate footage (one split per group) → [annotate (LLM)]
    → [tasks] → plan → write tables and shards → manifest

Where several workers share the work, Reshuffles between the heavy stages break fusion, so
decoding, CLIP and LLM calls can scale (and, on Dataflow, run on different workers). A video
whose staged result matches the current config is not processed again, so a killed build
resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from vidcorpus import storage
from vidcorpus.annotators.records import sum_counts
from vidcorpus.config import BuildConfig, config_to_dict
from vidcorpus.config.asr import asr_endpoint
from vidcorpus.media.scenes import MODEL_DETECTORS
from vidcorpus.pipelines.annotate import Annotate, AnnotateOnWorker
from vidcorpus.pipelines.asr import Transcribe
from vidcorpus.pipelines.discover import Identify, discover, pick_one
from vidcorpus.pipelines.embed import EmbedCandidates, join_embeddings, text_embeddings
from vidcorpus.pipelines.groups import GroupFootage
from vidcorpus.pipelines.index import stage_release_rows
from vidcorpus.pipelines.layout import clip_bucket, lay_out
from vidcorpus.pipelines.lock import BuildLock
from vidcorpus.pipelines.preflight import CannotStart, check_clip, check_inputs
from vidcorpus.pipelines.progress import Progress
from vidcorpus.pipelines.scan import Scan
from vidcorpus.pipelines.segment import Segment
from vidcorpus.pipelines.shots import DetectShots
from vidcorpus.pipelines.staging import result_fingerprint, stage_result
from vidcorpus.pipelines.tasks import ForeignPool, MakeTasks
from vidcorpus.pipelines.write import copy_probes, write_file
from vidcorpus.publish.card import write_card
from vidcorpus.publish.report import write_report
from vidcorpus.release.layout import MANIFEST, ReleaseExists, clear_release, release_paths
from vidcorpus.release.manifest import is_sealed, seal_manifest, write_manifest
from vidcorpus.runners import local_runner

log = logging.getLogger(__name__)
Result = dict[str, Any]
"""A video's result (`VideoResult`); declared so Beam never guesses a coder for it."""


@dataclass
class BuildSummary:
    output: str
    counts: dict[str, Any]
    dataset_hash: str
    skipped: list[str]
    skipped_stages: dict[str, str] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


class BatchesPending(Exception):
    """`--no-wait`: LLM batches are submitted; the same command run later collects them (exit 75)."""


class StageFailed(ValueError):
    """A stage stopped the build (e.g. the LLM circuit breaker): the release is marked so and not
    final; what was done is kept in the work directory for the rerun."""


def pipeline_options(cfg: BuildConfig) -> PipelineOptions:
    from vidcorpus.runners import pipeline_options as runner_options
    return runner_options(cfg.runner.name, cfg.runner.mode, cfg.runner.workers, cfg.dataflow)


def for_runner(cfg: BuildConfig) -> BuildConfig:
    """On Dataflow, the CLIP and TransNetV2 steps carry the GPU resource hint (and nothing else does)."""
    if cfg.runner.name != "dataflow":
        return cfg
    from vidcorpus.runners import clip_resource_hints, gpu_plan_problems, with_clip_accelerator
    clip = with_clip_accelerator(cfg.clip_model, cfg.dataflow)
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
    return cfg.model_copy(update={"clip_model": clip, "scenes": scenes, "llm": llm})


def skipped_stages(cfg: BuildConfig) -> dict[str, str]:
    """Stages this build leaves out, with the reason (recorded in the manifest)."""
    from vidcorpus.config.llm import skipped_reason

    skipped = {}
    if not cfg.clip_model.enabled:
        skipped["clip"] = "clip.enabled is false"
    reason = skipped_reason(cfg.llm)
    if reason:
        skipped["annotate"] = reason
    if not cfg.tasks.enabled:
        skipped["tasks"] = "tasks.enabled is false"
    if cfg.asr.enabled and asr_endpoint(cfg.asr, cfg.llm) is None:
        skipped["asr"] = "no ASR endpoint: set asr.base_url, llm.base_url or OPENAI_BASE_URL, or the API key variable"
    return skipped


def build(input_spec: str, output: str, cfg: BuildConfig, options: PipelineOptions | None = None,
          name: str | None = None, version: str | None = None, retry_failed: bool = False,
          allow_empty: bool = False) -> BuildSummary:
    """Build a release; everything known before running (no inputs, CLIP weights missing, a
    finished version, another build of this output) fails here within seconds, before the
    pipeline starts. A full disk anywhere stops the build with one message."""
    try:
        cfg = for_runner(cfg)
        release, work_dir = release_paths(output, name, version)
        uris, skipped = discover(input_spec, cfg.input)
    except (FileNotFoundError, ValueError) as exc:
        raise CannotStart(str(exc)) from exc
    check_inputs(input_spec, uris, skipped, allow_empty)
    check_clip(cfg)
    check_endpoint(cfg)
    try:
        with BuildLock(work_dir):
            return _build_locked(uris, skipped, release, work_dir, cfg, options, name, version, retry_failed)
    except Exception as exc:
        if storage.is_disk_full(exc) or "[Errno 28]" in str(exc):  # the runner may re-raise it as text
            raise disk_full(work_dir) from None
        raise


def _build_locked(uris: list[str], skipped: list[str], release: str, work_dir: str, cfg: BuildConfig,
                  options: PipelineOptions | None, name: str | None, version: str | None,
                  retry_failed: bool) -> BuildSummary:
    if name is not None and is_finished(release):
        raise ReleaseExists(f"{release} is a finished release and is never modified; choose a new --version")
    if name is None and storage.exists(storage.join(release, MANIFEST)):
        log.warning("replacing the earlier release at %s (a named --version is never replaced)", release)
    if skipped:
        log.info("skipped %d files without a video extension (input.extensions)", len(skipped))
    stages_off = skipped_stages(cfg)
    for stage, reason in stages_off.items():
        log.warning("skipping stage %s: %s", stage, reason)
    clear_release(release)
    with Progress(work_dir, total=len(uris), enabled=cfg.runner.progress):
        options = options or pipeline_options(cfg)
        pipeline = beam.Pipeline(runner=local_runner(cfg.runner.name, options), options=options)
        compose(pipeline, uris, release, work_dir, cfg, stages_off, {"name": name, "version": version},
                retry_failed)
        pipeline.run().wait_until_finish()
    write_card(release)
    try:
        write_report(release)
    except Exception as exc:
        if storage.is_disk_full(exc):
            raise
        log.warning("report.html not written (%s: %s); run `vidcorpus report %s`", type(exc).__name__, exc, release)
    manifest = seal_manifest(release)
    summary = BuildSummary(release, manifest["counts"], manifest["dataset_hash"], skipped, stages_off,
                           manifest.get("run", {}))
    if manifest.get("stages_pending"):
        raise BatchesPending(f"{release}: LLM batches are submitted and not yet collected "
                             f"({manifest['stages_pending']['annotate']}). Run the same command again later: it "
                             f"resumes polling the recorded batches and finishes the release.")
    if manifest.get("stages_failed"):
        failed = "; ".join(f"{stage}: {why}" for stage, why in manifest["stages_failed"].items())
        raise StageFailed(f"{release} is incomplete ({failed}). Everything scanned and every answer received "
                          f"is kept in the work directory: fix the cause and run the same command again.")
    return summary


def check_endpoint(cfg: BuildConfig) -> None:
    """With the LLM or ASR stage on, its endpoint, key and model answer before the pipeline starts."""
    from vidcorpus.annotators.preflight import LLMUnavailable, check_asr, check_llm
    skipped = skipped_stages(cfg)
    try:
        if "annotate" not in skipped:
            check_llm(cfg.llm)
        if "asr" not in skipped and (endpoint := asr_endpoint(cfg.asr, cfg.llm)) is not None:
            check_asr(endpoint, cfg.llm)
    except LLMUnavailable as exc:
        raise CannotStart(str(exc)) from exc


def is_finished(release: str) -> bool:
    """A release whose manifest is sealed (written last, after the card and the report) and
    has no failed or pending stage (a stopped LLM stage, batches not yet collected)."""
    uri = storage.join(release, MANIFEST)
    if not storage.exists(uri):
        return False
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except ValueError:
        return False
    return is_sealed(manifest) and not (manifest.get("stages_failed") or manifest.get("stages_pending"))


def disk_full(work_dir: str) -> storage.DiskFull:
    """A full disk anywhere (lock, scan, write, card, seal) stops the build with one message."""
    free = storage.free_bytes(work_dir)
    room = f"{free / 2**20:.0f} MiB free" if free is not None else "free space unknown"
    return storage.DiskFull(f"no space left on the device holding {work_dir} ({room}); what is done is kept: "
                            "free some space and run the same command again to resume")


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
        fingerprint = result_fingerprint(cfg)
        shots = to_segment | "Shots" >> DetectShots(cfg)
        to_segment = shots.scanned
        done.append(shots.done | "StageShotFailures" >> beam.Map(
            lambda r: stage_result(r, fingerprint, work_dir, r["failures"][0]["video_id"])))
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
    results = ((segmented, *done) | "Videos" >> beam.Flatten()
               | "GroupFootage" >> GroupFootage(dict(cfg.shards.splits), once))
    if cfg.asr.enabled and "asr" not in stages_off:
        results = results | "Transcribe" >> beam.ParDo(Transcribe(cfg, work_dir)).with_output_types(Result)
    if "annotate" not in stages_off:
        results = results | "SpreadForLLM" >> fusion_break(cfg)
        results = (results | "Annotate" >> AnnotateOnWorker(cfg, work_dir) if cfg.llm.backend == "vllm-worker"
                   else results | "Annotate" >> beam.ParDo(Annotate(cfg.llm, work_dir)).with_output_types(Result))
    if "tasks" not in stages_off:
        entries = results | "ForeignPool" >> ForeignPool(cfg.tasks)
        pool = once(p, "SortPool", entries, sorted, key=lambda e: e["clip_id"])
        results = (results | "Tasks" >> beam.ParDo(MakeTasks(cfg.tasks, list(cfg.shards.splits), work_dir),
                                                   beam.pvalue.AsSingleton(pool)).with_output_types(Result))
    tables = produced_tables(stages_off)
    everything = (results, identified.failed, unique.failed) | "AllResults" >> beam.Flatten()
    write_release(p, everything, output, work_dir, cfg, stages_off, tables, release or {})


def write_release(p: beam.Pipeline, results: beam.PCollection, output: str, work_dir: str, cfg: BuildConfig,
                  stages_off: dict[str, str], tables: tuple[str, ...], release: dict[str, Any]) -> None:
    """Results → release, with no step holding the corpus: each result's rows are staged in its
    unit folder and leave a small index entry; the layout is computed from the index; each shard
    and Parquet part is written by its own worker from its slices; the manifest is made from the
    file entries and the summed counters."""
    bucket_of = partial(clip_bucket, bucket_by=cfg.shards.bucket_by) if cfg.shards.bucket_by else None
    index = results | "StageRows" >> beam.Map(stage_release_rows, work_dir, tables, bucket_of)
    layout = (p | "LayoutOnce" >> beam.Create([None])
              | "Layout" >> beam.FlatMap(lay_out, beam.pvalue.AsList(index), cfg.shards.max_samples,
                                         cfg.shards.max_bytes, tables).with_outputs("summary", main="slices"))
    written = (layout.slices
               | "GroupWrites" >> beam.GroupByKey()
               | "WriteShards" >> beam.Map(write_file, output, work_dir))
    probes = results | "CopyProbes" >> beam.FlatMap(copy_probes, output, work_dir)
    usage = (results | "UsageOf" >> beam.Map(lambda r: {"usage": r.get("usage", {}), "llm_run": r.get("llm_run", {})})
             | "Usage" >> beam.CombineGlobally(sum_counts))
    entries = (written, probes) | "AllFiles" >> beam.Flatten()
    _ = layout.summary | "Manifest" >> beam.Map(_write_manifest, beam.pvalue.AsList(entries),
                                                beam.pvalue.AsSingleton(usage), output, cfg, stages_off,
                                                {**release, "models": models_of(cfg, stages_off)})


def _sorted_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """Sorted by key; sums of money rounded to the micro-dollar, so their order of addition
    (which follows the runner) cannot change the manifest's bytes."""
    def tidy(value: Any) -> Any:
        if isinstance(value, dict):
            return _sorted_counts(value)
        return round(value, 6) if isinstance(value, float) else value

    return {k: tidy(v) for k, v in sorted(counts.items())}


def once(p: beam.Pipeline, label: str, pcoll: beam.PCollection, fn, *args, **kwargs) -> beam.PCollection:
    """A one-element PCollection: `fn(all of pcoll's elements as a list, *args, **kwargs)`, also
    when `pcoll` is empty. A list side input does this in far fewer steps than a ToList
    combiner, whose graph construction and bundle set-up cost more on the local runner."""
    return (p | f"{label}Once" >> beam.Create([None])
            | label >> beam.Map(lambda _, items, *a, **kw: fn(items, *a, **kw), beam.pvalue.AsList(pcoll),
                                *args, **kwargs))


def fusion_break(cfg: BuildConfig) -> beam.PTransform:
    """A Reshuffle where several workers share the work (Dataflow, or the DirectRunner with
    `runner.workers` > 1), so each heavy stage spreads over them. One in-process worker has
    nothing to spread, and there the shuffles would only cost time."""
    if cfg.runner.name == "direct" and cfg.runner.workers == 1:
        return Unchanged()
    return beam.Reshuffle()


class Unchanged(beam.PTransform):
    def expand(self, pcoll):
        return pcoll


def produced_tables(stages_off: dict[str, str]) -> tuple[str, ...]:
    tables = ["videos", "clips", "transcripts"]
    if "clip" not in stages_off:
        tables.append("frames")
    if "annotate" not in stages_off:
        tables.append("annotations")
    if "tasks" not in stages_off:
        tables += ["sft", "rl"]
    return (*tables, "failures")


def _write_manifest(summary: dict[str, Any], files: list[dict[str, Any]], counters: dict[str, Any], output: str,
                    cfg: BuildConfig, stages_off: dict[str, str], release: dict[str, Any]) -> None:
    usage, llm_run = _sorted_counts(counters.get("usage", {})), _sorted_counts(counters.get("llm_run", {}))
    extra = {**release, "skipped_stages": stages_off, "usage": usage}
    if "buckets" in summary:
        extra["buckets"] = summary["buckets"]
    if "annotate" not in stages_off or llm_run:
        extra["run"] = {"llm": llm_run}
        if llm_run.get("breaker_open"):
            extra["stages_failed"] = {"annotate": "the LLM endpoint failed llm.max_consecutive_errors times in a "
                                                  "row; see the failures table"}
        if llm_run.get("batch_pending"):
            extra["stages_pending"] = {"annotate": f"{llm_run['batch_pending']} calls in submitted batches"}
    write_manifest(output, config_to_dict(cfg), summary["counts"], files, extra)


def models_of(cfg: BuildConfig, stages_off: dict[str, str]) -> dict[str, Any]:
    models: dict[str, Any] = {}
    if "clip" not in stages_off:
        from vidcorpus.scoring.clip import clip_model_tag
        models["clip"] = clip_model_tag(cfg.clip_model)
    if "annotate" not in stages_off:
        from vidcorpus.annotators.prompts import prompt_versions
        from vidcorpus.config.llm import ANNOTATORS, resolve_endpoint
        models["llm"] = {name: endpoint.model for name in ANNOTATORS
                         if (endpoint := resolve_endpoint(cfg.llm, name)) is not None}
        models["prompts"] = {pid: cfg.llm.prompt_versions.get(pid, max(versions))
                             for pid, versions in sorted(prompt_versions().items())}
    return models
