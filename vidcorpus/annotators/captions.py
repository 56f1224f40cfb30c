"""Clip captions from frames spread over the whole clip, differential as in ShareGPT4Video.

Each request carries at most `llm.max_frames` frames, each after its timestamp. In differential
mode a clip's request also carries the previous clip's caption, and the model first says what
changed and what is new, then writes the clip's own caption; clips are then captioned in order.
A clip with more frames than one request holds is captioned in consecutive windows (each
differential against the window before it) whose captions are then merged, text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.frames import Frame, image_parts, windows
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.config.llm import AnnotatorConfig


class ClipCaption(OutputModel):
    schema_name = "clip_caption"

    changes_since_previous: str | None
    """What changed and what is new since the previous clip (or part); null when there is none."""
    caption: NonEmptyStr


@dataclass(frozen=True)
class Previous:
    """The caption the next request is differential against, and the span it describes."""

    start_s: float
    end_s: float
    caption: str
    clip_id: str | None = None
    """The clip it belongs to, when it is a whole clip's caption."""


@dataclass(frozen=True)
class Part:
    """One caption request's share of a clip: its frames and their position among the clip's windows."""

    frames: list[Frame]
    number: int
    count: int

    @property
    def start_s(self) -> float:
        return self.frames[0].t

    @property
    def end_s(self) -> float:
        return self.frames[-1].t


def clip_parts(frames: Sequence[Frame], max_frames: int) -> list[Part]:
    chunks = windows(frames, max_frames)
    return [Part(chunk, i, len(chunks)) for i, chunk in enumerate(chunks)]


def part_item_id(clip: dict, part: Part) -> str:
    return clip["clip_id"] if part.count == 1 else f"{clip['clip_id']}_w{part.number:02d}"


def caption_request(
    video: dict, clip: dict, part: Part, previous: Previous | None, config: AnnotatorConfig,
) -> LLMRequest[ClipCaption]:
    """One part's request: the `caption` prompt, or `caption_diff` given the previous caption."""
    prompt_id = "caption_diff" if previous is not None else "caption"
    prompt = load_prompt(prompt_id, config.prompt_versions.get(prompt_id))
    span = f"the clip spans {_s(clip['start_s'])}-{_s(clip['end_s'])} s"
    if part.count > 1:
        span += f"; these frames are part {part.number + 1} of {part.count}, {_s(part.start_s)}-{_s(part.end_s)} s"
    values = dict(
        clip_index=clip["index"], video_duration=_s(video["duration_s"]), start_s=_s(clip["start_s"]),
        end_s=_s(clip["end_s"]), span=span, timestamps=", ".join(f"{_s(f.t)} s" for f in part.frames),
        speech=speech_block(clip),
    )
    if previous is not None:
        values.update(previous_s=_s(previous.end_s), previous_span=f"{_s(previous.start_s)}-{_s(previous.end_s)} s",
                      previous_caption=previous.caption)
    system, user = prompt.render(**values)
    content = [{"type": "text", "text": user}, *image_parts(part.frames, config.image_detail, config.image_max_side)]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    return LLMRequest(prompt, messages, ClipCaption, item_id=part_item_id(clip, part))


def merge_request(
    video: dict, clip: dict, parts: Sequence[tuple[Part, ClipCaption]], config: AnnotatorConfig,
) -> LLMRequest[ClipCaption]:
    """Text only: the captions of a long clip's windows, in order, become one clip caption."""
    prompt = load_prompt("caption_merge", config.prompt_versions.get("caption_merge"))
    lines = "\n".join(
        f"[{_s(p.start_s)}-{_s(p.end_s)} s] {c.caption}" + (f" Changes: {c.changes_since_previous}" if c.changes_since_previous else "")
        for p, c in parts
    )
    system, user = prompt.render(
        clip_index=clip["index"], video_duration=_s(video["duration_s"]), start_s=_s(clip["start_s"]),
        end_s=_s(clip["end_s"]), count=len(parts), parts=lines,
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return LLMRequest(prompt, messages, ClipCaption, item_id=clip["clip_id"])


def speech_lines(clip: dict) -> list[str]:
    """The clip's transcript lines as `[start-end s] text` (`speech_lines`, set by the annotate
    stage from the `transcripts` table); none when nothing is said in it."""
    return [line for line in (clip.get("speech_lines") or "").split("\n") if line]


def speech_block(clip: dict) -> str:
    """What is said in the clip, marked as speech, with times, for caption prompts."""
    lines = speech_lines(clip)
    if not lines:
        return "No speech was transcribed in this clip."
    return "Speech in this clip (subtitles or a transcript), as [start-end s] text:\n" + "\n".join(lines)


def _s(seconds: float) -> str:
    return f"{seconds:.2f}"
