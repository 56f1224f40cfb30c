"""Typed configuration of the tasks stage (embedded under `tasks:` in the build config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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


class NeedleGates(Section):
    """Floors a probe's needles must pass, measured on decoded frames (see `tasks.quality`)."""

    enabled: bool = True
    min_brightness: float = Field(24.0, ge=0)
    """Mean luma (0-255) of a foreign needle and the haystack around it."""
    min_contrast: float = Field(12.0, ge=0)
    """Luma standard deviation (RMS contrast), same frames."""
    min_sharpness: float = Field(20.0, ge=0)
    """Laplacian variance at 160 px, same frames."""
    min_motion: float = Field(0.2, ge=0)
    """Mean absolute luma change between frames (frozen: 0)."""
    min_box_contrast: float = Field(4.5, ge=1)
    """WCAG contrast of a rendered box against its surroundings."""
    max_text_edges: float = Field(0.12, ge=0, le=1)
    """Share of edge pixels under a box above which the picture is taken to show text already."""


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
    foreign_pool_max: int = Field(50_000, ge=1)
    """Most foreign-pool clips per split: those with the lowest id hashes, so the pool every
    worker receives stops growing with the corpus (about 300 bytes a clip)."""
    multi_counts: tuple[int, int] = (1, 5)
    """Fewest and most needles of a multi probe (uniform)."""
    choice_options: int = Field(4, ge=2, le=8)
    gates: NeedleGates = Field(default_factory=NeedleGates)
    fps: float | None = Field(None, gt=0)
    """Frame rate of probe media; None: the source rate, at most `max_fps`."""
    max_fps: float = Field(8.0, gt=0)
    """8 frames a second show every needle (1 s or more) on 8 frames or more, four times the
    1-2 fps video LLMs commonly sample, at a quarter of the encoding a 30 fps probe costs."""
    max_side: int = Field(640, ge=32)
    """Longest side of probe media, pixels."""
    probe_dir: str = "probes"
    crf: int = Field(23, ge=0, le=51)
    preset: str = "superfast"
    """x264 preset of probe media (and their proxies): a step faster than the clips' `veryfast`;
    probes are small (`max_side`, `max_fps`), so the few percent more bytes cost little."""
    encode_threads: int = Field(1, ge=1)
    """Fixed so written bytes do not depend on the host."""

    @field_validator("multi_counts")
    @classmethod
    def _count_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1] <= 8:
            raise ValueError("expected 1 <= fewest <= most <= 8")
        return value

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


class SpeechTasksConfig(Section):
    """"When is this line said?" and "what is said between t1 and t2?" from the transcripts."""

    enabled: bool = True
    per_video: int = Field(3, ge=0)
    """Tasks of each kind per video."""
    window_s: float = Field(120.0, gt=0.0)
    """Length of the video window shown."""
    min_line_s: float = Field(0.5, ge=0.0)
    min_words: int = Field(3, ge=1)
    """Shorter lines are not asked about (too easy to confuse)."""
    distractors: int = Field(3, ge=0)
    """Other lines of the video offered beside the right one in "what is said" tasks."""


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
    rl_share: float = Field(0.5, ge=0.0, le=1.0)
    """Share of tasks (by probe or task) exported for RL instead of SFT."""
    rl_overlap: bool = False
    """Export every task to both tables (RL then repeats what SFT taught)."""
    niah: NiahConfig = Field(default_factory=NiahConfig)
    ordering: OrderingConfig = Field(default_factory=OrderingConfig)
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)
    speech: SpeechTasksConfig = Field(default_factory=SpeechTasksConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
