"""Checks run on every generated QA item; their verdicts are stored on the item.

- spans: every evidence span lies inside the video and inside the clip it cites (so it is no
  longer than that clip); items that fail are dropped by default;
- CoT: the trace's final answer is the QA answer (same option letter, or same normalised text);
- blind: a text-only call that sees only the question and options; an item it answers right
  does not need the video, and is dropped by default;
- visual: a call that sees only the frames inside the evidence spans (no captions) and the
  question; an item it answers wrong is not shown by its own evidence, and is dropped by default;
- duplicates: questions with the same normalised text within a video are kept once.

Every dropped item becomes a failures row (`drop_row`, stage `annotate.verify.<check>`) that
holds the item, so a release says which items were dropped and why, not only how many.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vidcorpus.annotators.captions import speech_lines
from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.cot import CoTTrace
from vidcorpus.annotators.frames import Frame, frames_in_span, image_parts, spread
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.qa import QAItem, answer_key
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.schemas.records import failure_row
from vidcorpus.tasks.rewards import normalize_answer

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


class VisualAnswer(OutputModel):
    schema_name = "visual_answer"

    answer: NonEmptyStr


def visual_request(
    qa: QAItem, item_id: str, frames: Mapping[str, Sequence[Frame]], config: AnnotatorConfig,
    clips_by_id: Mapping[str, dict] | None = None,
) -> LLMRequest[VisualAnswer] | None:
    """The question with only the frames inside its evidence spans (at most `llm.max_frames`)
    and the speech of the clips it cites (so an answer heard, not seen, passes); None when no
    cited clip has a frame."""
    seen = [f for s in qa.evidence for f in frames_in_span(frames.get(s.clip_id, ()), s.start_s, s.end_s, config.max_frames)]
    picked = spread(list(dict.fromkeys(seen)), config.max_frames)
    if not picked:
        return None
    prompt = load_prompt("visual", config.prompt_versions.get("visual"))
    cited = dict.fromkeys(s.clip_id for s in qa.evidence)
    speech = [line for cid in cited for line in speech_lines((clips_by_id or {}).get(cid, {}))]
    system, user = prompt.render(start_s=f"{picked[0].t:.2f}", end_s=f"{picked[-1].t:.2f}", question=qa.question,
                                 options=qa.options_text(), answer_format=qa.answer_format(),
                                 speech="Speech, as [start-end s] text:\n" + "\n".join(speech) if speech else "")
    content = [{"type": "text", "text": user}, *image_parts(picked, config.image_detail, config.image_max_side)]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    return LLMRequest(prompt, messages, VisualAnswer, item_id=item_id)


def check_spans(qa: QAItem, duration_s: float, clips_by_id: Mapping[str, dict]) -> dict[str, bool]:
    """`spans_in_video`: all spans within [0, duration]; `spans_on_cited_clips`: each span lies
    inside the clip it cites, so none is longer than its clip."""
    tol = SPAN_TOLERANCE_S
    in_video = all(-tol <= s.start_s and s.end_s <= duration_s + tol for s in qa.evidence)
    on_clips = all(
        (clip := clips_by_id.get(s.clip_id)) is not None
        and clip["start_s"] - tol <= s.start_s
        and s.end_s <= clip["end_s"] + tol
        for s in qa.evidence
    )
    return {"spans_in_video": in_video, "spans_on_cited_clips": on_clips}


def same_answer(said: str, qa: QAItem) -> bool:
    """`said` is the item's answer: the same option letter (or option text), or the same normalised text."""
    return answer_key(said, qa.options) == answer_key(qa.answer, qa.options)


def cot_matches_answer(cot: CoTTrace, qa: QAItem) -> bool:
    return same_answer(cot.final_answer, qa)


def answered_blind(blind: BlindAnswer, qa: QAItem) -> bool:
    return same_answer(blind.answer, qa)


def answered_visually(visual: VisualAnswer, qa: QAItem) -> bool:
    return same_answer(visual.answer, qa)


def unique_questions(items: Sequence[QAItem]) -> tuple[list[int], list[int]]:
    """(positions kept, positions dropped as repeats of an earlier question's normalised text)."""
    seen: set[str] = set()
    kept, dropped = [], []
    for position, item in enumerate(items):
        key = normalize_answer(item.question)
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
        and verdicts.get("visually_confirmed") is not False
    )


def drop_row(video: dict, check: str, item_id: str, reason: str, item: dict[str, Any]) -> dict[str, Any]:
    """The failures row of an item a check dropped: stage `annotate.verify.<check>`, the reason,
    and the item itself as JSON."""
    message = f"{reason}: {json.dumps(item, sort_keys=True, ensure_ascii=False)}"
    return failure_row(video.get("uri"), f"annotate.verify.{check}", (_ERROR_CLASSES[check], message),
                       video["video_id"], item_id, attempts=0)


_ERROR_CLASSES = {
    "duplicate": "DuplicateQuestion", "blind": "AnswerableBlind", "spans": "SpanOutsideClip",
    "visual": "NotShownByEvidence", "count": "FewerItemsThanAsked",
}
