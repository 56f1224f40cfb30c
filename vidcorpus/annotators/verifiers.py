"""Checks run on every generated QA item; their verdicts are stored on the item.

- spans: every evidence span lies inside the video and overlaps the clip it cites;
- CoT: the trace's final answer is the QA answer (same option letter, or same normalised text);
- blind: a text-only call that sees only the question and options; an item it answers right
  does not need the video, and is dropped by default;
- duplicates: questions with the same normalised text within a video are kept once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.cot import CoTTrace
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.qa import QAItem, answer_key, normalise_text

SPAN_TOLERANCE_S = 0.05
"""Slack for rounding: captions show times to 1/100 s."""


class BlindAnswer(OutputModel):
    schema_name = "blind_answer"

    answer: NonEmptyStr


def blind_request(qa: QAItem, item_id: str, version: int | None = None) -> LLMRequest[BlindAnswer]:
    """A question with its options and nothing else: no captions, no summary, no images."""
    prompt = load_prompt("blind", version)
    system, user = prompt.render(question=qa.question, options=qa.options_text(), answer_format=qa.answer_format())
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return LLMRequest(prompt, messages, BlindAnswer, item_id=item_id)


def check_spans(qa: QAItem, duration_s: float, clips_by_id: Mapping[str, dict]) -> dict[str, bool]:
    """`spans_in_video`: all spans within [0, duration]; `spans_on_cited_clips`: each overlaps its clip."""
    tol = SPAN_TOLERANCE_S
    in_video = all(-tol <= s.start_s and s.end_s <= duration_s + tol for s in qa.evidence)
    on_clips = all(
        (clip := clips_by_id.get(s.clip_id)) is not None
        and s.start_s <= clip["end_s"] + tol
        and s.end_s >= clip["start_s"] - tol
        for s in qa.evidence
    )
    return {"spans_in_video": in_video, "spans_on_cited_clips": on_clips}


def cot_matches_answer(cot: CoTTrace, qa: QAItem) -> bool:
    return answer_key(cot.final_answer, qa.options) == answer_key(qa.answer, qa.options)


def answered_blind(blind: BlindAnswer, qa: QAItem) -> bool:
    return answer_key(blind.answer, qa.options) == answer_key(qa.answer, qa.options)


def unique_questions(items: Sequence[QAItem]) -> tuple[list[int], list[int]]:
    """(positions kept, positions dropped as repeats of an earlier question's normalised text)."""
    seen: set[str] = set()
    kept, dropped = [], []
    for position, item in enumerate(items):
        key = normalise_text(item.question)
        (dropped if key in seen else kept).append(position)
        seen.add(key)
    return kept, dropped


def passed(verdicts: Mapping[str, bool | None]) -> bool:
    """An item passes when no check failed; a check that could not run (None) does not fail it."""
    return (
        verdicts.get("spans_in_video") is not False
        and verdicts.get("spans_on_cited_clips") is not False
        and verdicts.get("cot_matches_answer") is not False
        and verdicts.get("blind_answerable") is not True
    )
