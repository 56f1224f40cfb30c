"""Sizing arithmetic for the runbook (docs/dataflow.md): the LLM request rate a job produces,
the concurrency that keeps it under a provider's rate limit, and throughput and cost per 1,000
video-hours from per-stage rates and prices that the caller states."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vidcorpus.config.runner import DataflowConfig

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
    """From `bench/bench_build.py` on real videos (docs/dataflow.md gives the figures): the default
    build, clip MP4s included. Decoding cost grows with pixels and re-encoding with the share of
    clips cut off key frames: measure on your own sources."""
    clip_frames_per_video_s: float = 2.0
    """Frames embedded per second of video: every keyframe candidate (`keyframes.candidates_per_s`)."""
    clip_images_per_s_per_gpu: float = 1000.0
    """Assumed, not measured: ViT-B-32 fp16 on one T4 including preprocessing. Measure it
    (bench/bench_clip.py on a GPU worker) and replace."""
    clips_per_video_hour: float = 600.0
    """Assumed: one scene clip every 6 s after merging and splitting; count it on a sample."""
    caption_input_tokens: float = 499.0
    """From `bench/bench_llm.py` (docs/dataflow.md): 4 low-detail keyframes per caption. Low detail
    counts 85 tokens per image on GPT-4o-class models; some models count more."""
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
