"""Where a build runs: Beam options for the local runner and for Google Cloud Dataflow.

Three things live here, all free of torch imports so that loading a recipe stays cheap:

- `DataflowConfig`, the `dataflow:` section of a recipe (project, buckets, worker image,
  CPU and GPU worker shapes), and `pipeline_options`, which turns a runner name plus that
  section into Beam `PipelineOptions`.
- The GPU placement. By default only the CLIP inference step asks for a GPU, through a Beam
  resource hint (`clip_resource_hints`, `with_clip_accelerator`); Dataflow's right fitting then
  runs that step alone on GPU workers and everything else on CPU workers. Google's right-fitting
  page says not to combine resource hints with the `worker_accelerator` service option, so that
  option is only set when `gpu_placement: all_workers` puts a GPU on every worker instead.
- Sizing arithmetic for the runbook (docs/dataflow.md): the LLM request rate a job produces,
  the concurrency that keeps it under a provider's rate limit, and throughput and cost per
  1,000 video-hours from per-stage rates and prices that the caller states.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

    from vidcorpus.scoring.clip_config import ClipConfig

RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner"}
"""Runner names a recipe may use (`runner.name`) and the Beam runner each one selects."""

GpuPlacement = Literal["clip", "all_workers", "none"]


class DataflowConfig(BaseModel):
    """The `dataflow:` section: everything a Dataflow job needs beyond the build recipe.

    `project`, `temp_location` and `sdk_container_image` have no defaults because they name
    the user's own resources; `pipeline_options` refuses to build Dataflow options without them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = None
    region: str = "us-central1"
    temp_location: str | None = None
    """`gs://bucket/path` for Beam's temporary files."""
    staging_location: str | None = None
    """`gs://bucket/path` for the staged job graph; defaults to `temp_location`."""
    job_name: str | None = None
    """Lowercase letters, digits and dashes; None lets Beam generate one."""
    sdk_container_image: str | None = None
    """The worker image built from docker/Dockerfile (same Beam and Python versions as the launcher)."""
    sdk_location: str = "container"
    """`container`: use the Beam SDK inside the worker image and stage no SDK tarball."""

    machine_type: str = "n2-standard-4"
    """CPU workers: probe, decode, scenes, keyframes, clip cutting, LLM calls, writes."""
    num_workers: int | None = Field(None, ge=1)
    """Workers at start; None lets Dataflow choose."""
    max_num_workers: int = Field(20, ge=1)
    autoscaling_algorithm: Literal["THROUGHPUT_BASED", "NONE"] = "THROUGHPUT_BASED"
    disk_size_gb: int = Field(50, ge=10)
    """Boot disk per worker; the CUDA-enabled worker image alone takes several GB."""
    service_account_email: str | None = None
    network: str | None = None
    subnetwork: str | None = None
    """Full URL or `regions/REGION/subnetworks/NAME`."""
    use_public_ips: bool | None = None
    """False keeps workers on private IPs (the network then needs Cloud NAT to reach a hosted
    LLM API); None keeps Dataflow's default."""
    labels: dict[str, str] = Field(default_factory=dict)

    gpu_placement: GpuPlacement = "clip"
    """`clip`: only the CLIP step runs on GPU workers (resource hint, right fitting);
    `all_workers`: every worker gets a GPU (`worker_accelerator` service option, every worker
    is `gpu_machine_type`); `none`: no GPUs (CLIP, if enabled, runs on CPU)."""
    gpu_type: str = "nvidia-tesla-t4"
    gpu_count: int = Field(1, ge=1)
    gpu_machine_type: str | None = "n1-standard-8"
    """Machine for GPU workers: T4, P4, V100 and P100 attach to N1 machines; L4 needs G2."""
    gpu_min_ram_gb: float | None = Field(None, gt=0)
    """Optional `min_ram` hint for the CLIP step, in GB."""
    gpu_options: tuple[str, ...] = ("install-nvidia-driver",)
    """Appended to the accelerator string as Dataflow's GPU page documents them."""

    experiments: tuple[str, ...] = ("use_runner_v2",)
    """`no_use_multiple_sdk_containers` is deliberately not a default: it leaves one Python
    process per worker VM, which serialises decoding behind the GIL on CPU workers. GPU memory
    is bounded with `clip.model_copies` instead (one shared model per GPU worker)."""
    number_of_worker_harness_threads: int | None = Field(None, ge=1)
    save_main_session: bool = False
    """All pipeline code is in the installed package, so nothing from `__main__` is pickled."""
    extra_options: dict[str, Any] = Field(default_factory=dict)
    """Any other Beam pipeline option by its Python name, e.g. `{worker_zone: us-central1-a}`;
    unknown names are rejected when the options are built."""

    @field_validator("temp_location", "staging_location")
    @classmethod
    def _on_cloud_storage(cls, value: str | None) -> str | None:
        # Beam's own check; a path it rejects makes it try to create a default bucket instead.
        if value is not None and not re.fullmatch(r"gs://[a-z0-9][-_a-z0-9.]+[a-z0-9]/.*", value, re.DOTALL):
            raise ValueError(f"must be gs://BUCKET/PATH with a valid bucket name, got {value!r}")
        return value

    @field_validator("project")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z][-a-z0-9:.]+[a-z0-9]", value):
            raise ValueError(f"expected a project ID (not its display name or number), got {value!r}")
        return value

    @field_validator("job_name")
    @classmethod
    def _dataflow_job_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", value):
            raise ValueError(f"job names use lowercase letters, digits and dashes, got {value!r}")
        return value

    @field_validator("gpu_type", "gpu_machine_type")
    @classmethod
    def _plain_token(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
            raise ValueError(f"expected lowercase letters, digits and dashes, got {value!r}")
        return value

    @field_validator("gpu_options")
    @classmethod
    def _no_separators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not option or ";" in option or "," in option:
                raise ValueError(f"gpu option {option!r} must be non-empty without ';' or ','")
        return value

    @model_validator(mode="after")
    def _gpu_machine_for_all_workers(self) -> "DataflowConfig":
        if self.gpu_placement == "all_workers" and self.gpu_machine_type is None:
            raise ValueError("gpu_placement all_workers needs gpu_machine_type")
        return self

    def missing_for_submit(self) -> list[str]:
        """Keys a Dataflow job cannot start without, as dotted recipe keys."""
        needed = ("project", "temp_location", "sdk_container_image")
        return [f"dataflow.{key}" for key in needed if not getattr(self, key)]


# ---------------------------------------------------------------------------------------------
# Pipeline options


def pipeline_options(
    runner: str,
    mode: str = "in_memory",
    workers: int = 1,
    dataflow: DataflowConfig | None = None,
    extra_args: Sequence[str] = (),
) -> "PipelineOptions":
    """Beam options for `runner` ('direct' or 'dataflow'); `extra_args` (raw Beam flags) come last
    and so override anything derived from the config.

    `mode` and `workers` are the local runner's (`runner.mode`, `runner.workers`); Dataflow
    sizes itself from the `dataflow` section and ignores them.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(pipeline_flags(runner, mode, workers, dataflow) + list(extra_args))
    _reject_unknown_options(options, dataflow)
    return options


def pipeline_flags(
    runner: str, mode: str = "in_memory", workers: int = 1, dataflow: DataflowConfig | None = None
) -> list[str]:
    """The same options as command-line flags: what `pipeline_options` parses, and what the
    runbook shows for a manual launch."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {sorted(RUNNERS)}, got {runner!r}")
    if runner == "direct":
        return ["--runner=DirectRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    if dataflow is None:
        raise ValueError("runner 'dataflow' needs the dataflow section of the recipe")
    missing = dataflow.missing_for_submit()
    if missing:
        raise ValueError(f"runner 'dataflow' needs {', '.join(missing)}")
    return _dataflow_flags(dataflow)


def _dataflow_flags(df: DataflowConfig) -> list[str]:
    all_gpus = df.gpu_placement == "all_workers"
    values: dict[str, Any] = {
        "runner": "DataflowRunner",
        "project": df.project,
        "region": df.region,
        "temp_location": df.temp_location,
        "staging_location": df.staging_location,
        "job_name": df.job_name,
        "sdk_container_image": df.sdk_container_image,
        "sdk_location": df.sdk_location,
        "machine_type": df.gpu_machine_type if all_gpus else df.machine_type,
        "num_workers": df.num_workers,
        "max_num_workers": df.max_num_workers,
        "autoscaling_algorithm": df.autoscaling_algorithm,
        "disk_size_gb": df.disk_size_gb,
        "service_account_email": df.service_account_email,
        "network": df.network,
        "subnetwork": df.subnetwork,
        "number_of_worker_harness_threads": df.number_of_worker_harness_threads,
        "experiments": list(df.experiments),
        "labels": [f"{k}={v}" for k, v in sorted(df.labels.items())],
        "dataflow_service_options": [f"worker_accelerator={worker_accelerator(df)}"] if all_gpus else [],
    }
    flags = _as_flags(values)
    if df.use_public_ips is not None:
        flags.append("--use_public_ips" if df.use_public_ips else "--no_use_public_ips")
    flags.append("--save_main_session" if df.save_main_session else "--no_save_main_session")
    return flags + _as_flags(dict(sorted(df.extra_options.items())))


def _as_flags(values: Mapping[str, Any]) -> list[str]:
    """`{key: value}` → `--key=value`; lists repeat the flag, True is a bare flag, None and
    False are left out (Beam's boolean flags have no `=False` form)."""
    flags: list[str] = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            flags += [f"--{key}={item}" for item in value]
        else:
            flags.append(f"--{key}={value}")
    return flags


def _reject_unknown_options(options: "PipelineOptions", dataflow: DataflowConfig | None) -> None:
    """Beam only logs a warning for a flag it does not know; a typo in `extra_options` should fail."""
    if dataflow is None or not dataflow.extra_options:
        return
    known = options.get_all_options(retain_unknown_options=False)
    unknown = sorted(set(dataflow.extra_options) - set(known))
    if unknown:
        raise ValueError(f"dataflow.extra_options: unknown Beam pipeline options {unknown}")


# ---------------------------------------------------------------------------------------------
# GPU placement


def accelerator_spec(df: DataflowConfig, machine_type: str | None = None) -> str:
    """`type:T;count:N[;machine_type:M];options...`, the string Dataflow reads for a GPU."""
    parts = [f"type:{df.gpu_type}", f"count:{df.gpu_count}"]
    if machine_type:
        parts.append(f"machine_type:{machine_type}")
    return ";".join([*parts, *df.gpu_options])


def worker_accelerator(df: DataflowConfig) -> str:
    """The `worker_accelerator` service option value (every worker gets the GPU)."""
    return accelerator_spec(df)


def clip_resource_hints(df: DataflowConfig | None) -> dict[str, str]:
    """Beam resource hints for the CLIP inference step, for `with_resource_hints(**hints)`.

    Empty unless `gpu_placement` is `clip`. The accelerator names the GPU machine type as well,
    so the GPU workers get a shape that fits the GPU while CPU workers keep `machine_type`.
    """
    if df is None or df.gpu_placement != "clip":
        return {}
    hints = {"accelerator": accelerator_spec(df, df.gpu_machine_type)}
    if df.gpu_min_ram_gb is not None:
        hints["min_ram"] = f"{df.gpu_min_ram_gb:g}GB"
    return hints


def with_clip_accelerator(clip: "ClipConfig", df: DataflowConfig | None) -> "ClipConfig":
    """`clip` with `accelerator` filled from the dataflow section, so the CLIP handler's
    resource hint (`OpenClipImageHandler.get_resource_hints`) puts RunInference on GPU workers.

    An accelerator already set in the `clip:` section is kept as written.
    """
    accelerator = clip_resource_hints(df).get("accelerator")
    if accelerator is None or clip.accelerator is not None:
        return clip
    return clip.model_copy(update={"accelerator": accelerator})


def gpu_plan_problems(clip: "ClipConfig", runner: str, df: DataflowConfig | None) -> list[str]:
    """Combinations of runner, GPU placement and CLIP device that would fail or waste a GPU."""
    if runner != "dataflow" or df is None or not clip.enabled:
        return []
    problems = []
    if df.gpu_placement == "none" and clip.device == "cuda":
        problems.append("clip.device is cuda but dataflow.gpu_placement is none: no worker has a GPU")
    if df.gpu_placement != "none" and clip.device == "cpu":
        problems.append(f"dataflow.gpu_placement is {df.gpu_placement} but clip.device is cpu: the GPU stays idle")
    if df.gpu_placement == "all_workers" and clip.accelerator is not None:
        problems.append("clip.accelerator is a resource hint; do not combine it with gpu_placement all_workers "
                        "(Dataflow's right fitting and the worker_accelerator option exclude each other)")
    return problems


# ---------------------------------------------------------------------------------------------
# Workers and the LLM request rate


def machine_vcpus(machine_type: str) -> int:
    """vCPUs of a Compute Engine machine type: `n2-standard-8` → 8, `n1-custom-6-23040` → 6.

    E2 shared-core types (`e2-micro`, `e2-small`, `e2-medium`) have 2 vCPUs.
    """
    custom = re.fullmatch(r"[a-z0-9]+-custom-(\d+)-\d+(-ext)?", machine_type)
    if custom:
        return int(custom.group(1))
    if machine_type in ("e2-micro", "e2-small", "e2-medium"):
        return 2
    sized = re.fullmatch(r"[a-z0-9]+-[a-z]+-(\d+)(-lssd)?", machine_type)
    if sized:
        return int(sized.group(1))
    raise ValueError(f"cannot tell the vCPUs of machine type {machine_type!r}")


def sdk_processes_per_worker(df: DataflowConfig) -> int:
    """Python SDK processes per worker that runs the LLM stage: one per vCPU on Runner v2, or
    one in all with `no_use_multiple_sdk_containers`."""
    if "no_use_multiple_sdk_containers" in df.experiments:
        return 1
    machine = df.gpu_machine_type if df.gpu_placement == "all_workers" else df.machine_type
    return machine_vcpus(machine)


def llm_in_flight(workers: int, processes_per_worker: int, concurrency: int, clients_per_process: int = 1) -> int:
    """Most LLM requests open at once: `llm.concurrency` per client, every client busy.

    `clients_per_process` is 1 when a process shares one client between its threads; a DoFn
    that builds its own client in `setup` has one per instance, and a process runs as many
    instances as it runs bundles at once (at most `number_of_worker_harness_threads`).
    """
    return workers * processes_per_worker * clients_per_process * concurrency


def llm_global_request_rate(
    workers: int, processes_per_worker: int, concurrency: int, mean_latency_s: float,
    clients_per_process: int = 1,
) -> float:
    """Requests per second the endpoint sees when every slot is busy (Little's law: in flight /
    latency). An upper bound: fewer requests go out while workers decode or write."""
    if mean_latency_s <= 0:
        raise ValueError("mean_latency_s must be positive")
    return llm_in_flight(workers, processes_per_worker, concurrency, clients_per_process) / mean_latency_s


def llm_concurrency_for_rate_limit(
    max_requests_per_s: float, workers: int, processes_per_worker: int, mean_latency_s: float,
    clients_per_process: int = 1,
) -> int:
    """The largest `llm.concurrency` that keeps the job under a provider's request limit, at
    least 1 (below that, lower `max_num_workers` instead)."""
    per_client = max_requests_per_s * mean_latency_s / (workers * processes_per_worker * clients_per_process)
    return max(1, math.floor(per_client))


# ---------------------------------------------------------------------------------------------
# Throughput and cost per 1,000 video-hours


@dataclass(frozen=True)
class StageRates:
    """Work per video-hour and speed per stage. Defaults: measured where stated, else assumed."""

    source_fps: float = 30.0
    """Frames per second of the source videos; every frame is decoded once."""
    decode_frames_per_s_per_vcpu: float = 240.0
    """Measured: the build benchmark (41 real videos, mostly 720p and below, on 2 vCPUs) runs at
    ~480 frames/s with the default clip MP4s (stream copy, re-encoding clips whose cut is not on
    a key frame) and ~1,030 frames/s with `clips.mode: off`. Decoding cost grows with pixels and
    re-encoding with the share of clips cut off key frames: measure on your own sources."""
    clip_frames_per_video_s: float = 2.0
    """Frames embedded per second of video: every keyframe candidate (`keyframes.candidates_per_s`)."""
    clip_images_per_s_per_gpu: float = 1000.0
    """Assumed, not measured: ViT-B-32 fp16 on one T4 including preprocessing. Measure it
    (bench/bench_clip.py on a GPU worker) and replace. On CPU the project measured ~18 images/s."""
    clips_per_video_hour: float = 600.0
    """Assumed: one scene clip every 6 s after merging and splitting; count it on a sample."""
    caption_input_tokens: float = 499.0
    """Measured (bench/bench_llm.py): 4 low-detail keyframes per caption; 232 with 1, 855 with 8.
    Low detail counts 85 tokens per image on GPT-4o-class models; some models count more."""
    caption_output_tokens: float = 120.0
    """Assumed length of one caption answer (JSON)."""
    per_video_llm_share: float = 0.25
    """Assumed: summaries, QA, CoT and blind checks add this share to the captions' requests and
    tokens (they are text only and fewer)."""


@dataclass(frozen=True)
class Prices:
    """USD list prices. These are assumptions to replace with your region's and provider's."""

    vcpu_hour: float = 0.056
    """Dataflow batch, per vCPU-hour (us-central1)."""
    memory_gb_hour: float = 0.003557
    """Dataflow batch, per GB-hour of worker memory."""
    memory_gb_per_vcpu: float = 4.0
    """n2-standard machines."""
    gpu_hour: float = 0.35
    """One NVIDIA T4 per hour."""
    gpu_host_vcpus: int = 8
    """The GPU worker's host machine (n1-standard-8) is billed while the GPU is."""
    gpu_host_memory_gb: float = 30.0
    llm_input_per_million: float = 0.15
    llm_output_per_million: float = 0.60


@dataclass(frozen=True)
class CostEstimate:
    video_hours: float
    decode_vcpu_hours: float
    clip_gpu_hours: float
    llm_requests: float
    llm_input_tokens: float
    llm_output_tokens: float
    decode_usd: float
    clip_usd: float
    llm_usd: float

    @property
    def total_usd(self) -> float:
        return self.decode_usd + self.clip_usd + self.llm_usd


def cost_per_1000_video_hours(rates: StageRates = StageRates(), prices: Prices = Prices()) -> CostEstimate:
    """Resources and cost of 1,000 hours of source video, stage by stage.

    decode vCPU-hours = 1000 × source_fps / decode_frames_per_s_per_vcpu
    CLIP GPU-hours    = 1000 × clip_frames_per_video_s / clip_images_per_s_per_gpu
    LLM requests      = 1000 × clips_per_video_hour × (1 + per_video_llm_share), tokens likewise
    Busy time only: worker start-up, autoscaling slack, shuffle, storage and egress are not in it.
    """
    video_hours = 1000.0
    decode_vcpu_hours = video_hours * rates.source_fps / rates.decode_frames_per_s_per_vcpu
    clip_gpu_hours = video_hours * rates.clip_frames_per_video_s / rates.clip_images_per_s_per_gpu
    calls = video_hours * rates.clips_per_video_hour * (1.0 + rates.per_video_llm_share)
    tokens_in = calls * rates.caption_input_tokens
    tokens_out = calls * rates.caption_output_tokens

    vcpu_usd = prices.vcpu_hour + prices.memory_gb_per_vcpu * prices.memory_gb_hour
    gpu_worker_usd = (prices.gpu_hour + prices.gpu_host_vcpus * prices.vcpu_hour
                      + prices.gpu_host_memory_gb * prices.memory_gb_hour)
    return CostEstimate(
        video_hours=video_hours,
        decode_vcpu_hours=decode_vcpu_hours,
        clip_gpu_hours=clip_gpu_hours,
        llm_requests=calls,
        llm_input_tokens=tokens_in,
        llm_output_tokens=tokens_out,
        decode_usd=decode_vcpu_hours * vcpu_usd,
        clip_usd=clip_gpu_hours * gpu_worker_usd,
        llm_usd=(tokens_in * prices.llm_input_per_million + tokens_out * prices.llm_output_per_million) / 1e6,
    )


@dataclass(frozen=True)
class StageThroughput:
    """Video-hours each stage can finish per wall-clock hour with the given resources."""

    decode: float
    clip: float
    llm: float

    @property
    def bottleneck(self) -> str:
        stages = {"decode": self.decode, "clip": self.clip, "llm": self.llm}
        return min(stages, key=stages.__getitem__)

    @property
    def video_hours_per_hour(self) -> float:
        return min(self.decode, self.clip, self.llm)


def stage_throughput(
    rates: StageRates, cpu_vcpus: int, gpus: int, llm_requests_per_s: float
) -> StageThroughput:
    """Per-stage capacity of a job: `cpu_vcpus` decoding, `gpus` embedding, and the LLM request
    rate (see `llm_global_request_rate`). The slowest stage sets the pace of the whole job."""
    llm_calls_per_video_hour = rates.clips_per_video_hour * (1.0 + rates.per_video_llm_share)
    return StageThroughput(
        decode=cpu_vcpus * rates.decode_frames_per_s_per_vcpu / rates.source_fps,
        clip=gpus * rates.clip_images_per_s_per_gpu / rates.clip_frames_per_video_s,
        llm=llm_requests_per_s * 3600.0 / llm_calls_per_video_hour,
    )
