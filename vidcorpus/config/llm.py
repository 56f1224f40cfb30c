"""Typed settings for the LLM annotators, embedded in the build config under `llm:`.

Endpoint, key and model resolve per annotator: the annotator's own block, then the section's
defaults, then the `OPENAI_BASE_URL` / `OPENAI_API_KEY` environment. The config holds the *name*
of the environment variable that carries the key, never the key itself, so a dumped config,
a manifest or a log line cannot leak it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from vidcorpus.config.base import Section

ANNOTATORS = ("caption", "summary", "qa", "cot", "blind", "visual")
"""Every LLM call site: clip captions, video summary, grounded QA, CoT traces, blind check,
visual check (the question answered from the evidence span's frames alone)."""

ImageDetail = Literal["low", "high", "auto"]
Mode = Literal["online", "batch"]


class Price(Section):
    """USD per million tokens for one model; `batch_discount` is the share taken off in batch mode."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    batch_discount: float = Field(0.5, ge=0, le=1)

    def cost_usd(self, tokens_in: int, tokens_out: int, batch: bool = False) -> float:
        cost = (tokens_in * self.input + tokens_out * self.output) / 1e6
        return cost * (1 - self.batch_discount) if batch else cost


class EndpointConfig(Section):
    """Per-annotator overrides; None falls back to the section defaults."""

    enabled: bool = True
    base_url: str | None = None
    api_key_env: str | None = None
    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)


class VllmWorkerConfig(Section):
    """`llm.backend: vllm-worker`: the server each GPU worker starts for `llm.model`."""

    command: tuple[str, ...] = ("vllm", "serve", "{model}", "--host", "127.0.0.1", "--port", "{port}",
                                "--gpu-memory-utilization", "{gpu_memory_utilization}",
                                "--limit-mm-per-prompt", "{limit_mm_per_prompt}")
    """The server command; {model}, {port}, {gpu_memory_utilization}, {limit_mm_per_prompt} are filled in."""
    port: int | None = Field(None, ge=1, le=65535)
    """None: a free port on the worker."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Share of the GPU's memory vLLM may take (weights plus KV cache)."""
    limit_mm_per_prompt: dict[str, int] = Field(default_factory=lambda: {"image": 8})
    """Most images per request; at least `llm.max_frames` (no extra image is sent)."""
    health_path: str = "/health"
    startup_timeout_s: float = Field(1200.0, gt=0)
    health_poll_s: float = Field(2.0, gt=0)
    max_restarts: int = Field(3, ge=0)
    stop_timeout_s: float = Field(30.0, gt=0)
    shared: bool = True
    """One server per worker machine, shared by its SDK processes; False: one per process."""
    accelerator: str | None = None
    """Beam resource hint for the annotate step (filled from `dataflow` when it places GPUs)."""


class VerifyConfig(Section):
    """Checks on generated QA beyond the span and blind checks."""

    visual: bool = True
    """Ask the model (`llm.visual` endpoint) the question with only the frames inside the evidence
    spans, no captions, and drop the items it answers wrong (false: no visual check)."""


class AnnotatorConfig(Section):
    enabled: bool = True
    backend: Literal["endpoint", "vllm-worker"] = "endpoint"
    """`endpoint`: an OpenAI-compatible URL (`base_url`); `vllm-worker`: each GPU worker serves
    `model` itself with vLLM (`vllm:`), spoken to over localhost."""
    vllm: VllmWorkerConfig = VllmWorkerConfig()
    base_url: str | None = None
    """OpenAI-compatible base URL (e.g. `http://localhost:8000/v1`); None reads `OPENAI_BASE_URL`."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key."""
    model: str = "gpt-4o-mini"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2048, ge=1)
    seed: int | None = 0
    """Sent with every request so endpoints that honour it answer reproducibly."""

    caption: EndpointConfig = EndpointConfig()
    """Switching off an annotator (`cot: {enabled: false}`) skips its calls and what depends on them."""
    summary: EndpointConfig = EndpointConfig()
    qa: EndpointConfig = EndpointConfig()
    cot: EndpointConfig = EndpointConfig()
    blind: EndpointConfig = EndpointConfig()
    visual: EndpointConfig = EndpointConfig()

    mode: Mode = "online"
    """`online`: chat completions with `concurrency` in flight; `batch`: each round through the Batch API."""
    concurrency: int = Field(64, ge=1)
    """Requests in flight per worker process, across all the videos it annotates at once."""
    max_retries: int = Field(5, ge=0)
    """Retries after the first attempt on 429, 5xx, timeouts and dropped connections."""
    timeout_s: float = Field(120.0, gt=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    cache_dir: str | None = None
    """Response cache root (local path or `gs://...`); None disables caching."""
    api_key_secret: str | None = None
    """Google Secret Manager version (`projects/P/secrets/S/versions/latest`) holding the API key;
    read on each worker, so the key never travels in pipeline options or the job graph."""

    prices: dict[str, Price] = Field(default_factory=dict)
    """Per model: USD per 1M input and output tokens and the batch discount; unpriced models cost 0."""
    max_usd: float | None = Field(None, gt=0)
    """Stop sending once this run has spent this much (per worker process); the rest become failures."""
    max_total_tokens: int | None = Field(None, gt=0)
    """Stop sending once this run has used this many tokens, input plus output (per worker process)."""
    tokens_per_minute: int | None = Field(None, gt=0)
    """Rate limit on estimated input tokens sent, besides the in-flight cap."""
    max_consecutive_errors: int = Field(20, ge=1)
    """Transport failures in a row (after retries) that stop all sending: the stage is marked failed."""
    batch_poll_s: float = Field(30.0, gt=0)
    """Seconds between polls of a submitted batch."""
    batch_wait: bool = True
    """False (`build --no-wait`): submit each pending round and exit with code 75; rerun later to collect."""
    batch_submit: bool = True
    """False: only write the round's Batch JSONL, for `vidcorpus llm export` and `vllm run-batch`."""

    frames_per_s: float = Field(0.5, gt=0, le=8)
    """Frames the model sees per second of clip (after ShareGPT4Video's one every 2 s), picked
    from the decode pass's keyframe candidates and spread over the whole clip."""
    min_frames: int = Field(2, ge=1)
    """Frames per clip however short it is (a clip with fewer candidates sends what it has)."""
    max_frames: int = Field(8, ge=1)
    """Images per request: a clip with more frames is captioned in windows, then merged; QA, CoT
    and the visual check send at most this many."""
    image_detail: ImageDetail = "high"
    """OpenAI image detail; `low` (512 px) cannot read small on-screen text."""
    image_max_side: int = Field(768, ge=64)
    """Images are scaled down to this longest side before they are sent."""
    differential_captions: bool = True
    """Each clip's caption request carries the previous clip's caption and asks what changed and
    what is new (ShareGPT4Video); a video's clips are then captioned in order."""
    context_clips: int = Field(8, ge=1)
    """Clips (captions and frames) in one QA or CoT request, around the clips it may cite, with the
    video summary: a request's size does not grow with the video's length."""
    qa_frames: bool = True
    """QA and CoT requests carry the frames of the clips they may cite; false: captions only."""
    summary_chunk_size: int = Field(8, ge=2)
    """Captions per partial summary, and partial summaries per reduce step."""
    qa_per_video: int = Field(5, ge=0)
    drop_blind_answerable: bool = True
    """Drop QA that the blind check (`blind.enabled`) answers right without the video (else flag)."""
    drop_failed_spans: bool = True
    """Drop QA whose evidence spans fall outside the video or outside their cited clips (else flag)."""
    verify: VerifyConfig = VerifyConfig()
    prompt_versions: dict[str, int] = Field(default_factory=dict)
    """Pin a prompt id to a version; unpinned prompts use their newest version."""


@dataclass(frozen=True)
class Endpoint:
    """One annotator's resolved endpoint. The key is excluded from repr and comparisons."""

    name: str
    base_url: str | None
    model: str
    temperature: float
    max_tokens: int
    seed: int | None
    api_key: str | None = field(default=None, repr=False, compare=False)


def resolve_endpoint(config: AnnotatorConfig, name: str, env: Mapping[str, str] | None = None) -> Endpoint | None:
    """The endpoint annotator `name` would call, or None when it is disabled or unconfigured."""
    env = os.environ if env is None else env
    own: EndpointConfig = getattr(config, name)
    if not (config.enabled and own.enabled):
        return None
    base_url = own.base_url or config.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = env.get(own.api_key_env or config.api_key_env) or None
    if base_url is None and api_key is None and config.api_key_secret is None:
        return None
    return Endpoint(
        name=name,
        base_url=base_url,
        model=own.model or config.model,
        temperature=config.temperature if own.temperature is None else own.temperature,
        max_tokens=own.max_tokens or config.max_tokens,
        seed=config.seed,
        api_key=api_key,
    )


def price_of(config: AnnotatorConfig, model: str) -> Price:
    """The configured price of `model` (zero when unpriced, e.g. one's own vLLM server)."""
    return config.prices.get(model, Price())


def endpoint_configured(config: AnnotatorConfig, env: Mapping[str, str] | None = None) -> bool:
    """True when captions can be made: the build skips every LLM stage (and says so) otherwise."""
    return resolve_endpoint(config, "caption", env) is not None


def skipped_reason(config: AnnotatorConfig, env: Mapping[str, str] | None = None) -> str | None:
    """Why the LLM stages will not run, in words for the build log; None when they will."""
    if not config.enabled:
        return "LLM annotation disabled (llm.enabled: false)"
    if not config.caption.enabled:
        return "LLM annotation disabled (llm.caption.enabled: false)"
    if config.backend == "vllm-worker":
        return None
    if not endpoint_configured(config, env):
        return (
            f"no LLM endpoint: set llm.base_url or OPENAI_BASE_URL, "
            f"or the API key variable {config.caption.api_key_env or config.api_key_env}"
        )
    return None
