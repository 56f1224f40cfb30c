"""Typed configuration of the tasks stage (embedded under `tasks:` in the build config)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vidcorpus.config.base import Section

NeedleKind = Literal["rendered", "foreign", "multi"]
MediaMode = Literal["written", "reference"]


class NiahGrid(Section):
    """The cells probes are drawn from: haystack length x needle depth x needle kind."""

    haystack_s: list[float] = Field(default_factory=lambda: [30.0, 60.0, 120.0, 300.0])
    depths: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    kinds: list[NeedleKind] = Field(default_factory=lambda: ["rendered", "foreign", "multi"])

    @field_validator("haystack_s")
    @classmethod
    def _positive_lengths(cls, values: list[float]) -> list[float]:
        if not values or any(v <= 0 for v in values):
            raise ValueError("haystack_s needs at least one positive length")
        return sorted(set(values))

    @field_validator("depths")
    @classmethod
    def _unit_depths(cls, values: list[float]) -> list[float]:
        if not values or any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError("depths must lie in [0, 1]")
        return sorted(set(values))


class NiahConfig(Section):
    """Needle-in-a-haystack probes."""

    enabled: bool = True
    grid: NiahGrid = Field(default_factory=NiahGrid)
    probes_per_video: int = Field(3, ge=0)
    """Grid cells drawn per video (seeded)."""
    needle_s: tuple[float, float] = (1.0, 3.0)
    needle_text: list[Literal["word", "number"]] = Field(default_factory=lambda: ["word", "number"])
    foreign_s: tuple[float, float] = (1.0, 4.0)
    foreign_pool_fraction: float = Field(0.25, gt=0.0, le=1.0)
    """Share of clips (by id hash) eligible as foreign needles."""
    multi_k: int = Field(3, ge=2, le=8)
    choice_options: int = Field(4, ge=2, le=8)
    fps: float | None = Field(None, gt=0)
    """Frame rate of probe media; None: source rate."""
    max_fps: float = Field(30.0, gt=0)
    max_side: int = Field(640, ge=32)
    """Longest side of probe media, pixels."""
    probe_dir: str = "probes"
    crf: int = Field(23, ge=0, le=51)
    preset: str = "veryfast"
    encode_threads: int = Field(1, ge=1)
    """Fixed so written bytes do not depend on the host."""

    @field_validator("needle_s", "foreign_s")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("expected 0 < low <= high")
        return value


class OrderingConfig(Section):
    """Temporal ordering (VCRBench-style): shuffled clips of one video."""

    enabled: bool = True
    k: int = Field(4, ge=2, le=8)
    per_video: int = Field(2, ge=0)
    min_clip_s: float = Field(1.0, ge=0.0)
    max_clip_s: float = Field(10.0, gt=0.0)
    """Longer clips are shown by their middle part."""


class GroundingConfig(Section):
    """Temporal grounding from captions and evidence-backed QA."""

    enabled: bool = True
    from_captions: bool = True
    from_qa: bool = True
    window_s: float = Field(120.0, gt=0.0)
    """Length of the video window shown."""
    per_video: int = Field(4, ge=0)
    min_event_s: float = Field(0.5, ge=0.0)


class SplitsConfig(Section):
    """Train/val/test fractions; a video's split comes from a hash of its id.

    Use the same fractions as the build's clip split (`shards.splits`) so clips and tasks agree.
    """

    fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "val": 0.05, "test": 0.05})

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> "SplitsConfig":
        if not self.fractions or any(v < 0 for v in self.fractions.values()):
            raise ValueError("split fractions must be non-negative")
        if not math.isclose(sum(self.fractions.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must sum to 1, got {sum(self.fractions.values())}")
        return self


class ExportConfig(Section):
    """How tasks become SFT conversations."""

    media_as: Literal["video", "frames"] = "video"
    frames_per_video: int = Field(8, ge=1)
    """Fewest frames per video in frames mode."""
    max_frame_interval_s: float | None = Field(1.0, gt=0)
    """Frames mode: more frames when needed so none are further apart than this; at or below the shortest needle, every needle is on at least one frame."""
    system_prompt: str | None = None


class TasksConfig(Section):
    """Everything the tasks stage needs; `seed` makes every choice reproducible."""

    enabled: bool = True
    seed: int = 0
    media_mode: MediaMode = "written"
    niah: NiahConfig = Field(default_factory=NiahConfig)
    ordering: OrderingConfig = Field(default_factory=OrderingConfig)
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)
    splits: SplitsConfig = Field(default_factory=SplitsConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
