"""Grounded QA: questions whose answers are tied to evidence spans (seconds) in cited clips.

A QA request sees the video summary, the entity list (canonical names with their aliases), and
the captions and frames of one bounded window of clips (`llm.context_clips`), so its size does
not grow with the video; a video's questions are spread over windows across its length. It
asks for a mix of question types, half of them multiple choice. Multiple-choice options are
then shuffled per item (`shuffle_options`) so the correct letters are uniform over the corpus,
whatever the model's own letter bias. `answer_key` reduces any answer to a comparable key, so
the CoT, blind and visual checks compare like with like.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from vidcorpus.annotators.captions import ClipCaption
from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.frames import Frame, image_parts, spread
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.summaries import VideoSummary, caption_lines
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.ids import unit_hash
from vidcorpus.tasks.rewards import normalize_answer, parse_choice

QuestionType = Literal["temporal_order", "causal", "counting", "spatial", "descriptive", "before_after", "detail"]
LETTERS = string.ascii_uppercase
MAX_OPTIONS = 6
MAX_SPANS = 4
MAX_ITEMS = 20
Captioned = Sequence[tuple[dict, ClipCaption]]


class EvidenceSpan(OutputModel):
    clip_id: NonEmptyStr
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> EvidenceSpan:
        if self.end_s < self.start_s:
            raise ValueError(f"evidence span ends ({self.end_s}) before it starts ({self.start_s})")
        return self


class QAItem(OutputModel):
    question: NonEmptyStr
    options: Annotated[list[str], Field(min_length=2, max_length=MAX_OPTIONS)] | None
    """Multiple-choice options without letters; the answer is then a letter (A for the first)."""
    answer: NonEmptyStr
    question_type: QuestionType
    evidence: list[EvidenceSpan] = Field(min_length=1, max_length=MAX_SPANS)
    """Where the answer can be seen: spans inside the cited clips, as short as the evidence."""

    @model_validator(mode="after")
    def _consistent(self) -> QAItem:
        if not self.evidence:
            raise ValueError("at least one evidence span is required")
        if self.options is not None:
            if not 2 <= len(self.options) <= len(LETTERS):
                raise ValueError("multiple choice needs at least two options")
            if parse_choice(self.answer, self.options) is None:
                raise ValueError(f"answer {self.answer!r} is not one of the option letters A-{LETTERS[len(self.options) - 1]}")
        return self

    def options_text(self) -> str:
        if not self.options:
            return "(open question: no options)"
        return "Options:\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options))

    def answer_format(self) -> str:
        return "the letter of the correct option" if self.options else "a short answer in a few words"


class QASet(OutputModel):
    schema_name = "qa_set"

    items: list[QAItem] = Field(min_length=1, max_length=MAX_ITEMS)


def qa_windows(captioned: Captioned, context_clips: int, n: int) -> list[tuple[list[tuple[dict, ClipCaption]], int]]:
    """(window of consecutive captioned clips, questions to ask about it): at most n windows of
    `context_clips` clips, the first at the video's start and the last at its end, evenly spread
    between them, sharing the n questions."""
    captioned = list(captioned)
    asked = min(n, math.ceil(len(captioned) / context_clips))
    if asked == 0:
        return []
    last = max(0, len(captioned) - context_clips)
    starts = [round(i * last / (asked - 1)) if asked > 1 else 0 for i in range(asked)]
    shares = [n // asked + (i < n % asked) for i in range(asked)]
    return [(captioned[s:s + context_clips], k) for s, k in zip(starts, shares)]


def window_frames(clips: Sequence[dict], frames: dict[str, Sequence[Frame]], limit: int) -> list[Frame]:
    """At most `limit` frames over the clips given, an equal share each, in time order."""
    if not clips:
        return []
    share = max(1, limit // len(clips))
    picked = [f for c in clips for f in spread(frames.get(c["clip_id"], ()), share)]
    return spread(picked, limit)


def context_messages(system: str, user: str, frames: Sequence[Frame], config: AnnotatorConfig) -> list[dict]:
    """System and user messages; the frames, when sent, follow the user text as images."""
    if not (config.qa_frames and frames):
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    content = [{"type": "text", "text": user}, *image_parts(frames, config.image_detail, config.image_max_side)]
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def qa_request(
    video: dict,
    window: Captioned,
    summary: VideoSummary | None,
    n: int,
    frames: dict[str, Sequence[Frame]],
    config: AnnotatorConfig,
    position: int = 0,
) -> LLMRequest[QASet]:
    """Questions about one window of clips, with the summary and entities of the whole video."""
    prompt = load_prompt("qa", config.prompt_versions.get("qa"))
    entities = summary.entities if summary else []
    clips = [clip for clip, _ in window]
    system, user = prompt.render(
        video_duration=f"{video['duration_s']:.2f}",
        summary=summary.summary if summary else "(none)",
        entities=summary.entity_names() if summary else "(none)",
        entity_list=summary.entity_lines() if summary else "(none)",
        window=f"{clips[0]['start_s']:.2f}-{clips[-1]['end_s']:.2f} s" if clips else "(none)",
        clips=caption_lines(window, entities),
        n=n,
    )
    messages = context_messages(system, user, window_frames(clips, frames, config.max_frames), config)
    item_id = f"{video['video_id']}_qa" + (f"_w{position:02d}" if position else "")
    return LLMRequest(prompt, messages, QASet, item_id=item_id)


def shuffle_options(item: QAItem, key: str) -> QAItem:
    """The item with its options in an order fixed by `key`: the correct option lands on a letter
    drawn uniformly from `key`, the others follow in a `key`-seeded order."""
    if not item.options:
        return item
    correct = LETTERS.index(parse_choice(item.answer, item.options))
    slot = int(unit_hash(key, "options") * len(item.options))
    others = [o for i, o in enumerate(item.options) if i != correct]
    random.Random(f"{key}:options").shuffle(others)
    options = others[:slot] + [item.options[correct]] + others[slot:]
    return item.model_copy(update={"options": options, "answer": LETTERS[slot]})


def answer_key(answer: str, options: Sequence[str] | None) -> str:
    """What two answers must share to be the same answer: the option letter, or normalised text
    (read and normalised by the reward rules' own parsers, so annotators and rewards agree)."""
    if options:
        return parse_choice(answer, options) or f"?{normalize_answer(answer)}"
    return normalize_answer(answer)
