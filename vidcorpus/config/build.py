"""Typed build configuration: pydantic models loaded from YAML plus `--set key=value` overrides.

Every section forbids unknown keys, so a typo in a recipe fails loudly and names the key.
The defaults are the embedded local recipe (`configs/default.yaml` spells them out).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from vidcorpus.config.asr import AsrConfig
from vidcorpus.config.audio import AudioConfig
from vidcorpus.config.base import Section
from vidcorpus.config.clip import ClipConfig
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.config.runner import DataflowConfig, RunnerConfig
from vidcorpus.config.tasks import TasksConfig
from vidcorpus.config.transnet import TransnetConfig

VIDEO_EXTENSIONS = (
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mts", "m2ts",
    "flv", "wmv", "3gp", "ogv", "mxf",
)


class InputConfig(Section):
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    """Directories and globs keep only files with these extensions; list files keep every line."""
    license: str | None = None
    """Licence recorded on every video row (e.g. `cc-by-4.0`); None means unknown."""


class IdsConfig(Section):
    hash: Literal["sampled", "full"] = "sampled"
    """`sampled`: sha256 over the size and three 1 MiB windows; `full`: sha256 of every byte."""


class ProbeConfig(Section):
    max_file_bytes: int = Field(64 * 2**30, gt=0)
    max_duration_s: float = Field(24 * 3600.0, gt=0)
    max_pixels: int = Field(8192 * 8192, gt=0)
    """Larger frames (width × height) are rejected as absurd before any decoding."""
    timeout_s: float = Field(120.0, gt=0)
    """Wall-clock limit for opening and probing one input; a stuck read becomes a failures row."""


class DecodeConfig(Section):
    working_size: int = Field(160, ge=32)
    """Scene detection and frame statistics run on frames whose longest side is this (portrait or
    landscape alike). Content scores are means over pixels, so small frames cost less and cut the
    same (160 and 256 gave identical cuts on the real test videos)."""
    threads: int = Field(0, ge=0)
    """Decoder threads; 0 lets FFmpeg choose."""
    min_coverage: float = Field(0.9, ge=0, le=1)
    """A decode that stops short of this share of the container duration is a failure."""
    timeout_s: float = Field(6 * 3600.0, gt=0)
    """Wall-clock limit for one video's decode pass; past it (a stuck read, a pathological file)
    the video becomes a failures row, retried by the next run."""


class ScenesConfig(Section):
    detector: Literal["content", "adaptive", "threshold", "hash", "histogram", "transnetv2", "consensus"] = "content"
    """A PySceneDetect detector; `transnetv2` (the model, `transnet:`); `consensus` (content and model cuts merged)."""
    threshold: float | None = None
    """Detector threshold; None keeps the detector's default (PySceneDetect's; TransNetV2's 0.5).
    With `consensus` it is the content detector's."""
    min_scene_s: float = Field(0.5, ge=0)
    """Scenes shorter than this merge into a neighbour."""
    max_scene_s: float | None = Field(None, gt=0)
    """Scenes longer than this split into equal parts; None keeps them whole."""
    transnet: TransnetConfig = TransnetConfig()


class KeyframesConfig(Section):
    k: int = Field(3, ge=1)
    mode: Literal["uniform", "diverse", "query"] = "uniform"
    """`uniform`: the sharpest usable frame of k equal segments; `diverse` (novelty in CLIP space)
    and `query` (relevance to `clip.queries` plus temporal coverage) need `clip.enabled`."""
    black_brightness: float = Field(16.0, ge=0)
    """Frames whose mean luma (0-255) is below this count as black."""
    blur_sharpness: float = Field(20.0, ge=0)
    """Frames whose Laplacian variance is below this count as blurred."""
    candidates_per_s: float = Field(2.0, gt=0)
    """Keyframe candidates kept per second of video: the sharpest usable frame of each 1/rate slot
    (slots also end at scene cuts). Keyframes are chosen among them, and CLIP embeds every one,
    so this rate is also the CLIP load per second of video."""
    max_size: int = Field(768, ge=32)
    """Longest side of a written keyframe JPEG (display orientation)."""
    jpeg_quality: int = Field(90, ge=1, le=100)


class ClipMp4Config(Section):
    mode: Literal["off", "copy", "reencode"] = "copy"
    """`copy`: stream copy when both cut points are key frames, else re-encode."""

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false
    max_short_side: int = Field(480, ge=16)
    """Re-encoded clips are scaled so their shorter side is at most this (480 gives 480p)."""
    encoder_threads: int = Field(2, ge=1)
    """Fixed, not per machine: x264's output bytes depend on its thread count."""
    crf: int = Field(23, ge=0, le=51)
    preset: str = "veryfast"


class ShardsConfig(Section):
    max_samples: int = Field(1000, ge=1)
    max_bytes: int = Field(1 << 30, ge=1)
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 1.0})
    """Fractions per split; a video's split comes from its id, so no video straddles splits."""
    bucket_by: list[Literal["resolution", "aspect", "duration"]] = Field(default_factory=list)
    """Group clip shards by training bucket (short side, aspect ratio, clip duration): shards are
    named `<split>-<bucket>-NNNNNN.tar` and the card lists the buckets. Empty: one run per split."""

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> "ShardsConfig":
        if not self.splits or abs(sum(self.splits.values()) - 1.0) > 1e-6:
            raise ValueError(f"shards.splits must sum to 1, got {self.splits}")
        return self


class PublishConfig(Section):
    include_sources: bool = False
    """Upload the source videos with the release: only where their licence allows it."""


class BuildConfig(Section):
    """The whole recipe."""

    input: InputConfig = InputConfig()
    ids: IdsConfig = IdsConfig()
    runner: RunnerConfig = RunnerConfig()
    probe: ProbeConfig = ProbeConfig()
    decode: DecodeConfig = DecodeConfig()
    scenes: ScenesConfig = ScenesConfig()
    keyframes: KeyframesConfig = KeyframesConfig()
    clip_mp4: ClipMp4Config = Field(ClipMp4Config(), alias="clips")
    """How each clip's MP4 is made (recipe key `clips`)."""
    audio: AudioConfig = AudioConfig()
    shards: ShardsConfig = ShardsConfig()
    clip_model: ClipConfig = Field(ClipConfig(), alias="clip")
    """The CLIP model and what the build does with its embeddings (recipe key `clip`)."""
    llm: AnnotatorConfig = AnnotatorConfig()
    asr: AsrConfig = AsrConfig()
    tasks: TasksConfig = TasksConfig()
    publish: PublishConfig = PublishConfig()
    dataflow: DataflowConfig = DataflowConfig()

    @model_validator(mode="after")
    def _embedding_modes_need_clip(self) -> "BuildConfig":
        if self.keyframes.mode != "uniform" and not self.clip_model.enabled:
            raise ValueError(f"keyframes.mode={self.keyframes.mode} needs clip.enabled=true")
        if self.keyframes.mode == "query" and not self.clip_model.queries:
            raise ValueError("keyframes.mode=query needs at least one entry in clip.queries")
        return self

    @model_validator(mode="after")
    def _checkpoint_exists_here(self) -> "BuildConfig":
        """A local build reads `clip.checkpoint_path` from this machine (Dataflow workers read
        it from their image, so it is not checked there)."""
        path = self.clip_model.checkpoint_path
        if self.clip_model.enabled and path and self.runner.name != "dataflow" and not os.path.isfile(path):
            raise ValueError(f"clip.checkpoint_path {path!r} is not a file on this machine")
        return self


class ConfigError(ValueError):
    """A recipe or override that does not fit the config model; the message names the key."""


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> BuildConfig:
    """Read a YAML recipe (or the defaults) and apply `key.sub=value` overrides in order."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    for item in overrides:
        key, value = _split_override(item)
        _set_dotted(data, key, yaml.safe_load(value))
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _split_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {item!r}")
    return key.strip(), value


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
    node[leaf] = value


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key: {key}")
        elif key:
            lines.append(f"config key {key}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


def config_to_dict(config: BuildConfig) -> dict[str, Any]:
    """Plain JSON-able form under the recipe's keys, as recorded in the manifest."""
    return config.model_dump(mode="json", by_alias=True)
