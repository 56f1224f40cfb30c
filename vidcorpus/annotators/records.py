"""Annotation rows as plain dicts, and the usage totals of one video.

Annotation ids extend their parent's id (clip, video or QA item) with the kind and a position,
so a re-run over the same inputs and config repeats them. `payload` and `verdicts` are JSON
strings with sorted keys, which keeps the table schema fixed whatever the model returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vidcorpus.annotators.client import LLMResult, Outcome, Usage

KINDS = ("caption", "summary", "qa", "cot")


def annotation_record(
    *,
    ann_id: str,
    kind: str,
    video_id: str,
    clip_id: str | None,
    payload: dict[str, Any],
    evidence_spans: Sequence[Sequence[float]],
    result: LLMResult,
    verdicts: dict[str, Any] | None = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """One row of the annotations table; `usage` overrides the result's own (shared or summed calls)."""
    usage = result.usage if usage is None else usage
    return {
        "ann_id": ann_id,
        "kind": kind,
        "video_id": video_id,
        "clip_id": clip_id,
        "payload": _json(payload),
        "evidence_spans": [[float(start), float(end)] for start, end in evidence_spans],
        "model": result.model,
        "prompt_id": result.prompt_id,
        "prompt_version": result.prompt_version,
        "request_hash": result.request_hash,
        "tokens_in": usage.tokens_in,
        "tokens_out": usage.tokens_out,
        "cache_hit": result.cache_hit,
        "verdicts": _json(verdicts or {}),
    }


def split_usage(usage: Usage, n: int) -> list[Usage]:
    """Share one call's tokens among the n items it produced; the shares sum to the whole."""
    def shares(total: int) -> list[int]:
        base, extra = divmod(total, n)
        return [base + (i < extra) for i in range(n)]

    return [Usage(i, o) for i, o in zip(shares(usage.tokens_in), shares(usage.tokens_out))]


@dataclass
class UsageTotals:
    """What annotating one video cost. Tokens count only calls made now, not cache hits."""

    calls: int = 0
    cache_hits: int = 0
    requests: int = 0
    retries: int = 0
    repairs: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    qa_asked: int = 0
    qa_kept: int = 0
    qa_fewer_than_asked: int = 0
    """Questions asked for but not written (a QA reply with fewer items than asked)."""
    qa_dropped_duplicate: int = 0
    qa_dropped_blind: int = 0
    qa_dropped_spans: int = 0
    qa_dropped_visual: int = 0
    summary_incomplete: int = 0
    """Videos whose summary lacks some chunks (a failed map or reduce call)."""
    letters: dict[str, int] = field(default_factory=dict)
    """Correct option letters of the kept multiple-choice items (reported as `qa_letter_<L>`)."""

    def count_letter(self, letter: str) -> None:
        self.letters[letter] = self.letters.get(letter, 0) + 1

    def add(self, outcome: Outcome) -> None:
        self.calls += 1
        self.requests += outcome.attempts
        self.retries += outcome.retries
        if outcome.ok:
            self.cache_hits += outcome.cache_hit
            self.repairs += outcome.repaired
        else:
            self.failures += 1
        if not (outcome.ok and outcome.cache_hit):
            self.tokens_in += outcome.usage.tokens_in
            self.tokens_out += outcome.usage.tokens_out

    def as_dict(self) -> dict[str, int]:
        totals = asdict(self)
        letters = totals.pop("letters")
        return {**totals, **{f"qa_letter_{letter}": n for letter, n in sorted(letters.items())}}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
