"""Typed settings for CLIP frame scoring, keyframe selection, scene stitching and duplicates.

Kept free of torch and open_clip imports so that loading a build recipe stays cheap; the
model code lives in `vidcorpus.scoring.clip`. The main config embeds this under `clip:`.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from vidcorpus.config.base import Section

RANDOM_WEIGHTS_TAG = "random"


class ClipConfig(Section):
    """How CLIP embeddings are computed and what the build does with them.

    Weights come from one of three places, checked in this order:
    `checkpoint_path` (a local .pt/.bin/.safetensors file), `pretrained` (an open_clip tag such
    as "laion2b_s34b_b79k", downloaded from the Hugging Face Hub into `cache_dir`, or a file
    path), or random initialisation, which is refused unless `allow_random_weights` is true
    (tests and throughput benchmarks only). `model` is any name from `open_clip.list_models()`,
    an "hf-hub:org/repo" or "local-dir:/path" reference, or the name of an architecture JSON
    registered through `model_config_path`.

    Thresholds are cosine similarities between L2-normalised embeddings. The stitch and
    transition defaults are Panda-70M's event-stitching distances (0.6 and 1.0 between unit
    vectors) written as cosines: cos = 1 - d**2 / 2.
    """

    enabled: bool = False
    model: str = "ViT-B-32"
    pretrained: Optional[str] = "laion2b_s34b_b79k"
    checkpoint_path: Optional[str] = None
    cache_dir: Optional[str] = None
    model_config_path: Optional[str] = None
    """Extra open_clip architecture JSON file or folder to register."""
    allow_random_weights: bool = False
    seed: int = 0
    """Seeds random initialisation; ignored with weights."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal['auto', 'fp32', 'fp16', 'bf16'] = 'auto'
    """Auto: fp16 on CUDA, fp32 on CPU."""
    batch_size: int = Field(default=32, ge=1)
    """Largest batch sent to the model."""
    min_batch_size: Optional[int] = Field(default=None, ge=1)
    """Smallest batch; defaults to batch_size (fixed batches)."""
    model_copies: Optional[int] = Field(default=None, ge=1)
    """Share this many copies across a worker's processes (GPU workers); None loads one copy per process."""
    accelerator: Optional[str] = None
    """Beam resource hint for the scoring step, e.g. 'type:nvidia-l4;count:1;install-nvidia-driver' on Dataflow."""

    diverse_threshold: float = Field(default=0.9, ge=-1.0, le=1.0)
    """A frame is novel when its cosine to the last keyframe is below this."""
    query_coverage_weight: float = Field(default=0.5, ge=0.0)
    """Weight of temporal spread against text relevance."""
    queries: list[str] = Field(default_factory=list)
    """Text prompts for keyframes.mode=query and the per-frame scores of the frames table."""

    stitch_threshold: float = Field(default=0.82, ge=-1.0, le=1.0)
    """Merge adjacent scenes whose boundary frames have at least this cosine."""
    transition_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    """A scene whose first and last frames have a cosine below this is a transition."""
    transition_action: Literal["mark", "drop"] = "mark"
    duplicate_threshold: float = Field(default=0.95, ge=-1.0, le=1.0)
    """Clips whose mean embeddings have at least this cosine share a duplicate group."""

    @model_validator(mode="after")
    def _check_consistency(self) -> "ClipConfig":
        if self.min_batch_size is not None and self.min_batch_size > self.batch_size:
            raise ValueError("clip.min_batch_size must not exceed clip.batch_size")
        return self

    @property
    def wants_random_weights(self) -> bool:
        """True when neither a checkpoint nor a pretrained tag/path names any weights."""
        return self.checkpoint_path is None and (
            self.pretrained is None or self.pretrained == RANDOM_WEIGHTS_TAG
        )
