"""Chain-of-thought traces per QA item, in VCR-Bench's step format.

The CoT call solves the question from the timestamped captions without being told the answer:
ordered steps, each tagged `perception` (what is seen, tied to a time span) or `reasoning`
(an inference, tied to the span it relies on when there is one), ending in a final answer.
Because the answer is not given, agreement with the QA answer is evidence, not an echo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import model_validator

from vidcorpus.annotators.captions import ClipCaption
from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.qa import QAItem
from vidcorpus.annotators.summaries import caption_lines


class CoTStep(OutputModel):
    kind: Literal["perception", "reasoning"]
    text: NonEmptyStr
    start_s: float | None
    end_s: float | None

    @model_validator(mode="after")
    def _timed(self) -> CoTStep:
        if (self.start_s is None) != (self.end_s is None):
            raise ValueError("start_s and end_s are both given or both null")
        if self.kind == "perception" and self.start_s is None:
            raise ValueError("a perception step must give the start_s and end_s of what it sees")
        if self.start_s is not None and self.end_s < self.start_s:
            raise ValueError(f"step span ends ({self.end_s}) before it starts ({self.start_s})")
        return self


class CoTTrace(OutputModel):
    schema_name = "cot_trace"

    steps: list[CoTStep]
    final_answer: NonEmptyStr

    @model_validator(mode="after")
    def _has_steps(self) -> CoTTrace:
        if not self.steps:
            raise ValueError("at least one step is required")
        return self

    def spans(self) -> list[list[float]]:
        """The distinct time spans the steps rely on, in order of first use."""
        seen: list[list[float]] = []
        for step in self.steps:
            span = [step.start_s, step.end_s]
            if step.start_s is not None and span not in seen:
                seen.append(span)
        return seen


def cot_request(
    video: dict,
    captioned: Sequence[tuple[dict, ClipCaption]],
    qa: QAItem,
    item_id: str,
    version: int | None = None,
) -> LLMRequest[CoTTrace]:
    prompt = load_prompt("cot", version)
    system, user = prompt.render(
        video_duration=f"{video['duration_s']:.2f}",
        clips=caption_lines(captioned),
        question=qa.question,
        options=qa.options_text(),
        answer_format=qa.answer_format(),
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return LLMRequest(prompt, messages, CoTTrace, item_id=item_id)
