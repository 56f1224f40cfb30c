"""Grounded QA: questions whose answers are tied to evidence spans (seconds) in cited clips.

The QA prompt sees the clip captions with their times and the summary's entity list, and asks
for a mix of question types, half of them multiple choice. Answers to multiple-choice items
are option letters; `answer_key` reduces any answer to a comparable key, so the CoT and blind
checks compare like with like.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Literal

from pydantic import model_validator

from vidcorpus.annotators.captions import ClipCaption
from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.summaries import VideoSummary, caption_lines

QuestionType = Literal["temporal_order", "causal", "counting", "spatial", "descriptive", "before_after", "detail"]
LETTERS = string.ascii_uppercase


class EvidenceSpan(OutputModel):
    clip_id: NonEmptyStr
    start_s: float
    end_s: float

    @model_validator(mode="after")
    def _ordered(self) -> EvidenceSpan:
        if self.end_s < self.start_s:
            raise ValueError(f"evidence span ends ({self.end_s}) before it starts ({self.start_s})")
        return self


class QAItem(OutputModel):
    question: NonEmptyStr
    options: list[str] | None
    """Multiple-choice options without letters; the answer is then a letter (A for the first)."""
    answer: NonEmptyStr
    question_type: QuestionType
    evidence: list[EvidenceSpan]

    @model_validator(mode="after")
    def _consistent(self) -> QAItem:
        if not self.evidence:
            raise ValueError("at least one evidence span is required")
        if self.options is not None:
            if not 2 <= len(self.options) <= len(LETTERS):
                raise ValueError("multiple choice needs at least two options")
            if option_letter(self.answer, self.options) is None:
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

    items: list[QAItem]


def qa_request(
    video: dict,
    captioned: Sequence[tuple[dict, ClipCaption]],
    summary: VideoSummary | None,
    n: int,
    version: int | None = None,
) -> LLMRequest[QASet]:
    prompt = load_prompt("qa", version)
    system, user = prompt.render(
        video_duration=f"{video['duration_s']:.2f}",
        summary=summary.summary if summary else "(none)",
        entities=summary.entity_names() if summary else "(none)",
        clips=caption_lines(captioned),
        n=n,
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return LLMRequest(prompt, messages, QASet, item_id=f"{video['video_id']}_qa")


def normalise_text(text: str) -> str:
    """Case, accents, punctuation and spacing removed; number words 0-20 become digits."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    words = [str(_NUMBER_WORDS.index(w)) if w in _NUMBER_WORDS else w for w in words]
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def option_letter(answer: str, options: Sequence[str]) -> str | None:
    """The option letter `answer` names: "B", "(b)", "B. text", "option B", or an option's text."""
    letters = LETTERS[:len(options)]
    match = re.fullmatch(r"\s*(?:option\s+)?\(?([A-Za-z])\)?(?:[.):]\s*.*)?\s*", answer, flags=re.IGNORECASE | re.DOTALL)
    if match and match[1].upper() in letters:
        return match[1].upper()
    wanted = normalise_text(answer)
    hits = [letters[i] for i, o in enumerate(options) if normalise_text(o) == wanted]
    return hits[0] if len(hits) == 1 else None


def answer_key(answer: str, options: Sequence[str] | None) -> str:
    """What two answers must share to be the same answer: the option letter, or normalised text."""
    if options:
        return option_letter(answer, options) or f"?{normalise_text(answer)}"
    return normalise_text(answer)


_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
