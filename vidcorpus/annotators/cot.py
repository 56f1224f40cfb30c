"""Chain-of-thought traces per QA item, in VCR-Bench's step format.

The CoT call solves the question without being told the answer, from the video summary, the
entity list, and the captions and frames of a bounded window of clips around the clips the
question cites (so a request's size does not grow with the video): ordered steps, each tagged `perception` (what is seen, tied to a time span) or `reasoning`
(an inference, tied to the span it relies on when there is one), ending in a final answer.
Because the answer is not given, agreement with the QA answer is evidence, not an echo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.frames import Frame
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.qa import Captioned, QAItem, context_messages, window_frames
from vidcorpus.annotators.summaries import VideoSummary, caption_lines
from vidcorpus.config.llm import AnnotatorConfig

MAX_STEPS = 12
Seconds = Annotated[float, Field(ge=0)]


class CoTStep(OutputModel):
    kind: Literal["perception", "reasoning"]
    text: NonEmptyStr
    start_s: Seconds | None
    end_s: Seconds | None

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

    steps: list[CoTStep] = Field(min_length=1, max_length=MAX_STEPS)
    final_answer: NonEmptyStr

    def spans(self) -> list[list[float]]:
        """The distinct time spans the steps rely on, in order of first use."""
        seen: list[list[float]] = []
        for step in self.steps:
            span = [step.start_s, step.end_s]
            if step.start_s is not None and span not in seen:
                seen.append(span)
        return seen


def cot_window(captioned: Captioned, cited: set[str], context_clips: int) -> list:
    """At most `context_clips` captioned clips: the cited ones, then their nearest neighbours, in order."""
    positions = [i for i, (clip, _) in enumerate(captioned) if clip["clip_id"] in cited][:context_clips]
    if not positions:
        positions = [0] if captioned else []
    others = sorted((i for i in range(len(captioned)) if i not in positions),
                    key=lambda i: (min(abs(i - p) for p in positions), i))
    chosen = sorted(positions + others[:max(0, context_clips - len(positions))])
    return [captioned[i] for i in chosen]


def cot_request(
    video: dict,
    captioned: Captioned,
    summary: VideoSummary | None,
    qa: QAItem,
    item_id: str,
    frames: dict[str, Sequence[Frame]],
    config: AnnotatorConfig,
) -> LLMRequest[CoTTrace]:
    prompt = load_prompt("cot", config.prompt_versions.get("cot"))
    cited = {s.clip_id for s in qa.evidence}
    window = cot_window(captioned, cited, config.context_clips)
    system, user = prompt.render(
        video_duration=f"{video['duration_s']:.2f}",
        summary=summary.summary if summary else "(none)",
        entity_list=summary.entity_lines() if summary else "(none)",
        clips=caption_lines(window, summary.entities if summary else ()),
        question=qa.question,
        options=qa.options_text(),
        answer_format=qa.answer_format(),
    )
    cited_clips = [clip for clip, _ in window if clip["clip_id"] in cited] or [clip for clip, _ in window]
    messages = context_messages(system, user, window_frames(cited_clips, frames, config.max_frames), config)
    return LLMRequest(prompt, messages, CoTTrace, item_id=item_id)
