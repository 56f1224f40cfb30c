"""Offline check of the Dataflow job a recipe would submit.

Builds the real vidcorpus pipeline with Dataflow options and Beam's dry run (`TestOptions.
dry_run`: the DataflowRunner translates the pipeline into its job graph and returns before it
stages or submits anything, so no credentials and no network are needed), writes the job
request and a summary of the graph, and checks that

1. every step runs in the worker image (`dataflow.sdk_container_image`) and nothing has to be
   staged for the workers but Beam's list of the launcher's packages;
2. with `gpu_placement: clip`, the CLIP inference step, and only it, carries the accelerator
   resource hint, and the `worker_accelerator` service option is not set (Dataflow's right
   fitting and that option exclude each other); with `all_workers`, the reverse;
3. each heavy stage (scan, CLIP, segment, LLM annotation, shard writing) sits behind a
   Reshuffle, so Dataflow spreads it over workers instead of fusing it to a narrow upstream;
4. the worker pool has the configured machine type, disk, autoscaling cap and experiments;
5. no step's input is the whole corpus: every side input comes from a step known to carry
   something small per video (the release index, footage signatures, the foreign-needle pool,
   file entries, counters), never from a step that carries results, and the only global
   combine is the counters' (results are never gathered into one list or dict).

Run:
    .venv/bin/python bench/check_dataflow_graph.py [--config configs/dataflow-gpu.yaml]
        [--set dataflow.gpu_type=nvidia-l4 --set dataflow.gpu_machine_type=g2-standard-8 ...]
        [--out out/dataflow-graph]
Writes OUT/job.json (the Dataflow job request, less staged files) and OUT/graph.json (steps,
environments, fusion breaks); exits 0 when every check passes. Values the recipe leaves empty
(project, buckets, image) are replaced by placeholders, which the report lists.
"""

from __future__ import annotations

import argparse
import base64
import bz2
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import apache_beam as beam  # noqa: E402
import yaml  # noqa: E402
from apache_beam.options.pipeline_options import TestOptions  # noqa: E402
from apache_beam.portability import common_urns  # noqa: E402
from apache_beam.portability.api import beam_runner_api_pb2  # noqa: E402

from vidcorpus.config import BuildConfig, load_config  # noqa: E402
from vidcorpus.config.runner import DataflowConfig  # noqa: E402
from vidcorpus.release.layout import WORK_DIR  # noqa: E402
from vidcorpus.runners import gpu_plan_problems, pipeline_options, with_clip_accelerator, worker_accelerator  # noqa: E402

DEFAULT_RECIPE = ROOT / "configs" / "dataflow-gpu.yaml"
CHECK_JOB_NAME = "vidcorpus-graph-check"
PLACEHOLDERS = {
    "project": CHECK_JOB_NAME,
    "temp_location": f"gs://{CHECK_JOB_NAME}/tmp",
    "sdk_container_image": f"us-central1-docker.pkg.dev/{CHECK_JOB_NAME}/vidcorpus/worker:check",
}
SAMPLE_URIS = [f"gs://{CHECK_JOB_NAME}/videos/sample-{i}.mp4" for i in range(3)]
SAMPLE_OUTPUT = f"gs://{CHECK_JOB_NAME}/corpus"

SENTINEL_KEY = "sk-graph-check-must-not-appear-0123456789"
HEAVY_STEPS = ("Scan", "Segment", "Annotate", "WriteShards")
"""Top-level labels of the expensive per-item stages in `vidcorpus.pipelines.build.compose`."""
CLIP_STEP_SUFFIX = "/BeamML_RunInference"
"""RunInference's own label for the step that runs the model."""

ALLOWED_STAGED = {"submission_environment_dependencies.txt"}
"""Beam stages the launcher's package list so that workers can report version mismatches."""

SMALL_SIDE_INPUTS = {
    "StageRows": "the release index: one small entry per input",
    "AllFiles": "the written files' manifest entries",
    "Usage/UnKey": "the summed LLM counters",
    "Usage/InjectDefault": "the summed LLM counters",
    "GroupFootage/FootageEntries": "a footage signature per video",
    "GroupFootage/FootageGroups": "split and flags of near-duplicate videos",
    "ForeignPool/Flatten": "the foreign-needle pool: at most tasks.niah.foreign_pool_max clips per split",
    "SortPool": "the foreign-needle pool, sorted",
}
"""Steps whose output may be a side input: each carries a small entry per video, clip or file."""
GLOBAL_COMBINES = ("Usage",)
"""The only combines over the whole corpus: counters."""
BOUNDED_COMBINES = ("ForeignPool",)
"""Combines whose output is bounded by config whatever the corpus: the foreign-needle pool's
per-split top-k (`tasks.niah.foreign_pool_max`)."""
KEYED_WRITES = ("GroupWrites",)
"""GroupByKeys that bring each release file's slices to its writer (a shuffle, like a Reshuffle)."""

COMBINE_URN = common_urns.composites.COMBINE_PER_KEY.urn
RESHUFFLE_URN = common_urns.composites.RESHUFFLE.urn
GBK_URN = common_urns.primitives.GROUP_BY_KEY.urn
PARDO_URN = common_urns.primitives.PAR_DO.urn
HINT_NAMES = {
    common_urns.resource_hints.ACCELERATOR.urn: "accelerator",
    common_urns.resource_hints.MIN_RAM_BYTES.urn: "min_ram_bytes",
}


# ---------------------------------------------------------------------------------------------
# Recipe


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> tuple[BuildConfig, DataflowConfig]:
    """The build config and its `dataflow:` section, from one recipe plus `--set` overrides.

    While the main config does not embed `dataflow:` (or `runner.name`), those are read beside
    it and every other key goes through the normal loader.
    """
    if "dataflow" in BuildConfig.model_fields:
        cfg = load_config(path, list(overrides))
        return cfg, cfg.dataflow
    data = yaml.safe_load(Path(path).read_text()) or {}
    dataflow = dict(data.pop("dataflow", None) or {})
    runner = data.get("runner")
    if isinstance(runner, dict) and "name" not in BuildConfig.model_fields["runner"].annotation.model_fields:
        runner.pop("name", None)
    rest = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("dataflow."):
            dataflow[key.removeprefix("dataflow.")] = yaml.safe_load(value)
        elif key != "runner.name":
            rest.append(item)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as stripped:
        yaml.safe_dump(data, stripped)
        stripped.flush()
        cfg = load_config(stripped.name, rest)
    return cfg, DataflowConfig.model_validate(dataflow)


def with_placeholders(df: DataflowConfig) -> tuple[DataflowConfig, dict[str, str]]:
    """Fill what the recipe leaves to the user, so that the graph can be built offline."""
    filled = {key: value for key, value in PLACEHOLDERS.items() if not getattr(df, key)}
    if not df.job_name:
        filled["job_name"] = CHECK_JOB_NAME
    return df.model_copy(update=filled), filled


# ---------------------------------------------------------------------------------------------
# Dry run


def compose_build(p: beam.Pipeline, cfg: BuildConfig, uris: Sequence[str], output: str) -> dict[str, str]:
    """Add the build's transforms to `p`, as a Dataflow launch would; returns the stages left out.

    The one call into the build's composition: adapt it here when `compose` changes. The LLM
    stage is kept unless the recipe switches it off, since the launcher's environment (with or
    without an endpoint) says nothing about the job's graph.
    """
    from vidcorpus import storage
    from vidcorpus.pipelines import build

    stages_off = build.skipped_stages(cfg)
    if cfg.llm.enabled and cfg.llm.caption.enabled:
        stages_off.pop("annotate", None)
    build.compose(p, list(uris), output, storage.join(output, WORK_DIR), cfg, stages_off)
    return stages_off


def dry_run(compose: Callable[[beam.Pipeline], Any], df: DataflowConfig):
    """Translate a pipeline for Dataflow without submitting it; returns (Beam's job, compose's result)."""
    options = pipeline_options("dataflow", dataflow=df)
    options.view_as(TestOptions).dry_run = True  # before the Pipeline validates its options
    p = beam.Pipeline(options=options)
    composed = compose(p)
    return p.run().job, composed


def job_request(job) -> dict[str, Any]:
    """The job as the Dataflow API would receive it, less the staged files: the environment
    (worker pools, images, experiments, service options) is built here as Beam builds it just
    before submission. Run-specific values (request id, staging suffix) are normalised."""
    from apache_beam.runners.dataflow.internal import apiclient
    from apache_beam.runners.internal.names import STAGED_PIPELINE_FILENAME

    options = job.google_cloud_options
    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=f"{options.staging_location}/{STAGED_PIPELINE_FILENAME}",
        proto_pipeline=job.proto_pipeline,
    ).proto
    text = re.sub(re.escape(options.job_name) + r"\.\d+\.\d+", options.job_name, job.json())
    request = json.loads(text)
    request.pop("clientRequestId", None)
    return request


# ---------------------------------------------------------------------------------------------
# Graph


def graph_summary(proto: beam_runner_api_pb2.Pipeline) -> dict[str, Any]:
    """Leaf steps with their main inputs, environments with their resource hints, Reshuffles."""
    transforms = proto.components.transforms
    producers = {pc: tid for tid, t in transforms.items() if not t.subtransforms for pc in t.outputs.values()}
    steps = {}
    for tid, t in transforms.items():
        if t.subtransforms:
            continue
        steps[t.unique_name] = {
            "urn": t.spec.urn,
            "environment": t.environment_id or None,
            "inputs": sorted(transforms[producers[pc]].unique_name for pc in _main_inputs(t)),
        }
    environments = {}
    for env_id, env in proto.components.environments.items():
        payload = beam_runner_api_pb2.DockerPayload.FromString(env.payload)
        environments[env_id] = {
            "image": payload.container_image,
            "hints": {HINT_NAMES.get(urn, urn): value.decode() for urn, value in sorted(env.resource_hints.items())},
            "staged": sorted(_staged_name(d) for d in env.dependencies),
        }
    reshuffles = {t.unique_name for t in transforms.values() if t.spec.urn == RESHUFFLE_URN}
    side_inputs = sorted({(t.unique_name, transforms[producers[pc]].unique_name)
                          for t in transforms.values() if not t.subtransforms for pc in _side_inputs(t)})
    names = {t.unique_name for t in transforms.values()}
    combines = sorted(t.unique_name for t in transforms.values() if t.spec.urn == COMBINE_URN
                      and t.unique_name.rsplit("/", 1)[0] + "/KeyWithVoid" in names)  # CombineGlobally
    return {"steps": dict(sorted(steps.items())), "environments": dict(sorted(environments.items())),
            "reshuffles": sorted(reshuffles), "side_inputs": [list(pair) for pair in side_inputs],
            "combines": combines}


def _staged_name(artifact: beam_runner_api_pb2.ArtifactInformation) -> str:
    if artifact.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
        return beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name
    return artifact.type_urn


def _side_names(t: beam_runner_api_pb2.PTransform) -> set[str]:
    if t.spec.urn != PARDO_URN:
        return set()
    return set(beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).side_inputs)


def _main_inputs(t: beam_runner_api_pb2.PTransform) -> list[str]:
    side = _side_names(t)
    return [pc for local, pc in t.inputs.items() if local not in side]


def _side_inputs(t: beam_runner_api_pb2.PTransform) -> list[str]:
    side = _side_names(t)
    return [pc for local, pc in t.inputs.items() if local in side]


def fusion_breaks(summary: dict[str, Any], step: str) -> list[str | None]:
    """The nearest shuffle on every main-input path above `step`: a Reshuffle's name, the name
    of another grouping step, or None when the path reaches a source without one."""
    steps = summary["steps"]
    found: list[str | None] = []
    seen: set[str] = set()
    stack = list(steps[step]["inputs"])
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if steps[name]["urn"] == GBK_URN:
            found.append(_enclosing_reshuffle(summary, name) or name)
        elif not steps[name]["inputs"]:
            found.append(None)
        else:
            stack.extend(steps[name]["inputs"])
    return sorted(found, key=str)


def _enclosing_reshuffle(summary: dict[str, Any], step: str) -> str | None:
    enclosing = [r for r in summary["reshuffles"] if step.startswith(r + "/")]
    return max(enclosing, key=len) if enclosing else None


def step_hints(summary: dict[str, Any], step: str) -> dict[str, str]:
    env = summary["steps"][step]["environment"]
    return summary["environments"][env]["hints"] if env else {}


# ---------------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True)
class Expectations:
    image: str
    machine_type: str
    disk_size_gb: int
    max_num_workers: int
    experiments: tuple[str, ...]
    clip_accelerator: str | None
    """The hint the CLIP step must carry; None: no step may carry one."""
    worker_accelerator: str | None
    """The service option every worker gets; None: it must be absent."""
    clip_expected: bool
    heavy_steps: tuple[str, ...] = HEAVY_STEPS


def expectations_for(cfg: BuildConfig, df: DataflowConfig, stages_off: dict[str, str]) -> Expectations:
    all_gpus = df.gpu_placement == "all_workers"
    return Expectations(
        image=df.sdk_container_image,
        machine_type=df.gpu_machine_type if all_gpus else df.machine_type,
        disk_size_gb=df.disk_size_gb,
        max_num_workers=df.max_num_workers,
        experiments=df.experiments,
        clip_accelerator=cfg.clip_model.accelerator if "clip" not in stages_off else None,
        worker_accelerator=worker_accelerator(df) if all_gpus else None,
        clip_expected="clip" not in stages_off,
        heavy_steps=tuple(s for s in HEAVY_STEPS if not (s == "Annotate" and "annotate" in stages_off)),
    )


def check(summary: dict[str, Any], request: dict[str, Any], expect: Expectations) -> list[str]:
    """Every way the job differs from what the recipe asks for; empty when it matches."""
    return [*_check_images(summary, request, expect), *_check_gpu(summary, request, expect),
            *_check_fusion(summary, expect), *_check_pool(request, expect), *_check_no_corpus_input(summary)]


def _check_no_corpus_input(summary) -> Iterable[str]:
    """No step reads the whole corpus: side inputs only from steps that carry small entries, and
    no global combine but the counters."""
    for step, producer in summary["side_inputs"]:
        if producer not in SMALL_SIDE_INPUTS:
            yield f"step {step} reads the output of {producer} whole (a side input); only small per-video " \
                  f"entries may be ({', '.join(sorted(SMALL_SIDE_INPUTS))})"
    for combine in summary["combines"]:
        if combine.split("/")[0] not in GLOBAL_COMBINES + BOUNDED_COMBINES:
            yield f"combine {combine} gathers a whole collection; only counters ({GLOBAL_COMBINES}) may"


def _check_secret(proto: beam_runner_api_pb2.Pipeline, request_text: str, secret: str) -> Iterable[str]:
    """The API key in the launcher's environment appears nowhere in the job: not in its JSON, not
    in any transform's payload, pickled DoFns (inflated) included. Workers read it themselves."""
    if secret in request_text:
        yield "the LLM API key appears in the job request"
    for name, transform in proto.components.transforms.items():
        payloads = [transform.spec.payload]
        if transform.spec.urn == PARDO_URN:
            pardo = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            payloads.append(_inflated(pardo.do_fn.payload))
        if any(secret.encode() in payload for payload in payloads):
            yield f"the LLM API key appears in the payload of {transform.unique_name or name}"


def _inflated(data: bytes) -> bytes:
    """A pickled DoFn as Beam stores it (base64 of bz2 or zlib), opened; else the bytes as they are."""
    try:
        packed = base64.b64decode(data)
    except ValueError:
        return data
    for inflate in (bz2.decompress, zlib.decompress):
        try:
            return inflate(packed)
        except (OSError, ValueError, zlib.error):
            continue
    return data


def _check_images(summary, request, expect) -> Iterable[str]:
    for env_id, env in summary["environments"].items():
        if env["image"] != expect.image:
            yield f"environment {env_id} runs {env['image']!r}, not the worker image {expect.image!r}"
        extra = sorted(set(env["staged"]) - ALLOWED_STAGED)
        if extra:
            yield f"environment {env_id} stages {extra}; the worker image should hold everything"
    pool = request["environment"]["workerPools"][0]
    for image in pool.get("sdkHarnessContainerImages", []):
        if image["containerImage"] != expect.image:
            yield f"worker pool runs {image['containerImage']!r}, not {expect.image!r}"


def _check_gpu(summary, request, expect) -> Iterable[str]:
    clip_steps = [s for s in summary["steps"] if s.endswith(CLIP_STEP_SUFFIX)]
    if expect.clip_expected and not clip_steps:
        yield f"no CLIP inference step (*{CLIP_STEP_SUFFIX}) in the graph"
    hinted = {s for s in summary["steps"] if "accelerator" in step_hints(summary, s)}
    if expect.clip_accelerator is None:
        for step in sorted(hinted):
            yield f"step {step} asks for an accelerator; none is expected"
    else:
        for step in clip_steps:
            got = step_hints(summary, step).get("accelerator")
            if got != expect.clip_accelerator:
                yield f"CLIP step {step} has accelerator hint {got!r}, expected {expect.clip_accelerator!r}"
        clip_scopes = tuple(s.removesuffix(CLIP_STEP_SUFFIX) + "/" for s in clip_steps)
        for step in sorted(hinted):
            if not step.startswith(clip_scopes):
                yield f"step {step} outside the CLIP transform asks for a GPU"
    options = request["environment"].get("serviceOptions", [])
    accelerators = [o for o in options if o.startswith("worker_accelerator=")]
    wanted = [f"worker_accelerator={expect.worker_accelerator}"] if expect.worker_accelerator else []
    if accelerators != wanted:
        yield f"service options {accelerators}, expected {wanted}"


def _check_fusion(summary, expect) -> Iterable[str]:
    heavy = [(name, [s for s, step in summary["steps"].items()
                     if (s == name or s.startswith(name + "/")) and step["urn"] == PARDO_URN])
             for name in expect.heavy_steps]
    if expect.clip_expected:
        heavy.append(("CLIP", [s for s in summary["steps"] if s.endswith(CLIP_STEP_SUFFIX)]))
    for name, steps in heavy:
        if not steps:
            yield f"heavy step {name} not found in the graph (update HEAVY_STEPS when the build changes)"
        for step in steps:
            breaks = fusion_breaks(summary, step)
            if not breaks or any(b not in summary["reshuffles"] and b not in KEYED_WRITES for b in breaks):
                yield f"{step} is not behind a Reshuffle; nearest shuffles upstream: {breaks}"


def _check_pool(request, expect) -> Iterable[str]:
    env = request["environment"]
    pool = env["workerPools"][0]
    got = {"machine type": pool.get("machineType"), "disk GB": pool.get("diskSizeGb"),
           "max workers": pool.get("autoscalingSettings", {}).get("maxNumWorkers")}
    wanted = {"machine type": expect.machine_type, "disk GB": expect.disk_size_gb,
              "max workers": expect.max_num_workers}
    for key in wanted:
        if got[key] != wanted[key]:
            yield f"worker pool {key} is {got[key]!r}, expected {wanted[key]!r}"
    missing = sorted(set(expect.experiments) - set(env.get("experiments", [])))
    if missing:
        yield f"experiments missing from the job: {missing}"


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_RECIPE), help="recipe (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    parser.add_argument("--out", default=str(ROOT / "out" / "dataflow-graph"), help="folder for job.json, graph.json")
    args = parser.parse_args(argv)

    cfg, df = load_recipe(args.config, args.set)
    os.environ.setdefault(cfg.llm.api_key_env, SENTINEL_KEY)  # the launcher's key must not reach the job
    secret = os.environ[cfg.llm.api_key_env]
    df, placeholders = with_placeholders(df)
    cfg = cfg.model_copy(update={"clip_model": with_clip_accelerator(cfg.clip_model, df)})
    job, stages_off = dry_run(lambda p: compose_build(p, cfg, SAMPLE_URIS, SAMPLE_OUTPUT), df)
    summary = graph_summary(job.proto_pipeline)
    request = job_request(job)
    summary["fusion_breaks"] = {s: fusion_breaks(summary, s) for s in summary["steps"]
                                if s.split("/")[0] in HEAVY_STEPS or s.endswith(CLIP_STEP_SUFFIX)}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps(request, indent=2, sort_keys=True) + "\n")
    (out / "graph.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    expect = expectations_for(cfg, df, stages_off)
    problems = gpu_plan_problems(cfg.clip_model, "dataflow", df) + check(summary, request, expect)
    problems += list(_check_secret(job.proto_pipeline, json.dumps(request), secret))
    hinted = {s: step_hints(summary, s) for s in summary["steps"] if step_hints(summary, s)}
    print(f"recipe {args.config}: {len(summary['steps'])} steps, {len(summary['reshuffles'])} Reshuffles, "
          f"stages off: {sorted(stages_off) or 'none'}")
    for key, value in sorted(placeholders.items()):
        print(f"  placeholder dataflow.{key} = {value}")
    for step, hints in sorted(hinted.items()):
        print(f"  {step}: {hints}")
    for step, breaks in sorted(summary["fusion_breaks"].items()):
        print(f"  {step} <- {', '.join(map(str, breaks))}")
    print(f"wrote {out / 'job.json'} and {out / 'graph.json'}")
    for problem in problems:
        print(f"FAIL {problem}")
    print("ok" if not problems else f"{len(problems)} problems")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
