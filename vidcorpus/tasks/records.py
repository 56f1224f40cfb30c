"""Typed records the task planners produce: edit lists, probe specs, media references, tasks.

Time conventions (all float seconds):

- ``source_*`` times are seconds from the first video frame of a source video, as in clip
  records;
- ``start_s``/``end_s`` of a `Segment` and every span a question asks about or a ground truth
  holds are seconds from the start of the media the model is shown (a probe or a window of a
  source video), because that is the only clock the model can see. Source-time spans are kept
  in ``Task.meta`` for provenance.

An `EditList` describes media as consecutive pieces of source videos, optionally with a text
overlay. It is both the reference form of a probe (a trainer assembles it) and the recipe the
renderer follows to write the probe as MP4 (see `vidcorpus.tasks.render`).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RewardRule = Literal["exact", "choice", "order", "order_exact", "temporal_iou"]
TaskFamily = Literal["niah", "order", "grounding", "speech"]

_TIME_TOLERANCE_S = 1e-6


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Span(_Record):
    """A half-open time interval [start_s, end_s)."""

    start_s: float
    end_s: float

    @model_validator(mode="after")
    def _ordered(self) -> "Span":
        if not self.end_s > self.start_s:
            raise ValueError(f"empty span {self.start_s}..{self.end_s}")
        return self

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class TextOverlay(_Record):
    """Text drawn in a filled box on every frame of a segment (see `vidcorpus.media.needle`).

    `box` is (x0, y0, x1, y1) as fractions of frame width/height; `font_size` is the font
    size as a fraction of frame height, so the overlay scales with any output resolution.
    """

    text: str
    box: tuple[float, float, float, float]
    font_size: float
    fg: tuple[int, int, int] = (0, 0, 0)
    bg: tuple[int, int, int] = (255, 255, 255)


class Segment(_Record):
    """One piece of an edit list: [source_start_s, source_end_s) of one source video placed
    at [start_s, end_s) of the edited timeline, at normal speed."""

    role: Literal["haystack", "needle"]
    video_id: str
    uri: str
    source_start_s: float = Field(ge=0.0)
    source_end_s: float
    start_s: float = Field(ge=0.0)
    end_s: float
    clip_ids: list[str] = Field(default_factory=list)
    overlay: TextOverlay | None = None

    @model_validator(mode="after")
    def _same_speed(self) -> "Segment":
        if not self.end_s > self.start_s:
            raise ValueError("segment has no duration")
        if abs((self.source_end_s - self.source_start_s) - (self.end_s - self.start_s)) > 1e-3:
            raise ValueError("segment changes speed: source and timeline durations differ")
        return self


class EditList(_Record):
    """Media assembled from source pieces, covering [0, duration_s) without gaps."""

    fps: float = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    segments: list[Segment]

    @model_validator(mode="after")
    def _contiguous(self) -> "EditList":
        if not self.segments:
            raise ValueError("edit list has no segments")
        cursor = 0.0
        for segment in self.segments:
            if abs(segment.start_s - cursor) > _TIME_TOLERANCE_S:
                raise ValueError(f"gap or overlap at {cursor:.6f}s")
            cursor = segment.end_s
        return self

    @property
    def duration_s(self) -> float:
        return self.segments[-1].end_s


class Needle(_Record):
    """What was hidden in a probe and where (probe time)."""

    kind: Literal["rendered", "foreign"]
    span: Span
    depth: float = Field(ge=0.0, le=1.0)
    video_id: str
    clip_id: str | None = None
    text: str | None = None
    caption: str | None = None


class ProbeSpec(_Record):
    """A needle-in-a-haystack probe: a haystack of consecutive clips with needles in it."""

    probe_id: str
    video_id: str
    split: str
    kind: Literal["rendered", "foreign", "multi"]
    haystack_s: float
    depth: float | None
    haystack_source: Span
    haystack_clip_ids: list[str]
    needles: list[Needle]
    edit: EditList
    seed: int
    quality: dict[str, float] = Field(default_factory=dict)  # measured by the needle gates (tasks.quality)


class MediaRef(_Record):
    """One video a model is shown.

    kind="window": [start_s, end_s) of the source at `uri` (seconds from its first frame).
    kind="probe": an assembled probe; `edit_list` is its recipe; `uri` is where its written
    MP4 lives (relative to the release root) in written mode and None in reference mode.
    """

    kind: Literal["window", "probe"]
    video_id: str
    uri: str | None
    duration_s: float = Field(gt=0)
    start_s: float | None = None
    end_s: float | None = None
    clip_id: str | None = None
    probe_id: str | None = None
    edit_list: EditList | None = None


class Task(_Record):
    """One verifiable question about media, with its answer and reward rule."""

    task_id: str
    family: TaskFamily
    kind: str
    video_id: str
    video_ids: list[str]
    split: str
    source_ids: list[str]
    media: list[MediaRef]
    media_labels: list[str] | None = None
    question: str
    answer_format: str
    options: list[str] = Field(default_factory=list)
    ground_truth: Any
    answer: str
    reward_rule: RewardRule
    difficulty: float = Field(ge=0.0, le=1.0)
    meta: dict[str, Any] = Field(default_factory=dict)


def seeded_rng(seed: int, *parts: Any) -> random.Random:
    """A random stream that depends only on the seed and the named parts (not on call order)."""
    key = json.dumps([seed, *parts], sort_keys=True, default=str)
    return random.Random(hashlib.sha256(key.encode()).hexdigest())


def round_time(seconds: float) -> float:
    """Times as stated to a model and stored as ground truth: centiseconds."""
    return round(float(seconds) + 0.0, 2)


def format_seconds(seconds: float) -> str:
    """'12.5', '20', '0.07': a time as written in answers."""
    text = f"{round_time(seconds):.2f}".rstrip("0").rstrip(".")
    return text or "0"


def format_span(start_s: float, end_s: float) -> str:
    return f"{format_seconds(start_s)}-{format_seconds(end_s)} seconds"
