"""Annotation rows as plain dicts, and the usage totals of one video.

Annotation ids extend their parent's id (clip, video or QA item) with the kind and a position,
so a re-run over the same inputs and config repeats them. `payload` and `verdicts` are JSON
strings with sorted keys, which keeps the table schema fixed whatever the model returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vidcorpus.annotators.batch import BATCH_PENDING
from vidcorpus.annotators.breaker import CIRCUIT_OPEN
from vidcorpus.annotators.budget import BUDGET_EXHAUSTED
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
        "cost_usd": round(result.cost_of(usage), 8),
        "verdicts": _json(verdicts or {}),
    }


def split_usage(usage: Usage, n: int) -> list[Usage]:
    """Share one call's tokens among the n items it produced; the shares sum to the whole."""
    def shares(total: int) -> list[int]:
        base, extra = divmod(total, n)
        return [base + (i < extra) for i in range(n)]

    return [Usage(i, o) for i, o in zip(shares(usage.tokens_in), shares(usage.tokens_out))]


@dataclass
class RunTotals:
    """What this run sent for one video: run-dependent (a warm cache sends nothing), so it goes to
    the manifest's `run` section, never into a table."""

    requests: int = 0
    """HTTP requests sent, retries and repairs included."""
    retries: int = 0
    """HTTP retries of transport errors (429, 5xx, timeouts, dropped connections, cut bodies)."""
    repairs: int = 0
    """Repair requests sent after an invalid reply."""
    cache_hits: int = 0
    """Calls answered by the cache or by an identical request in flight."""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    budget_exhausted: int = 0
    circuit_open: int = 0
    batch_pending: int = 0
    """Calls left in a submitted batch (`--no-wait`): collected by the next run."""


@dataclass
class UsageTotals:
    """What this version's annotations of one video cost (the same whether answered now or from
    the cache), plus `run`: what this run actually sent for them."""

    calls: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
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
    by_prompt: dict[str, list] = field(default_factory=dict)
    run: RunTotals = field(default_factory=RunTotals)

    def count_letter(self, letter: str) -> None:
        self.letters[letter] = self.letters.get(letter, 0) + 1

    def add(self, outcome: Outcome) -> None:
        self.calls += 1
        self.failures += not outcome.ok
        self.tokens_in += outcome.usage.tokens_in
        self.tokens_out += outcome.usage.tokens_out
        self.cost_usd += outcome.cost_usd
        stage = self.by_prompt.setdefault(outcome.prompt_id, [0, 0, 0.0])
        stage[0] += outcome.usage.tokens_in
        stage[1] += outcome.usage.tokens_out
        stage[2] += outcome.cost_usd
        self._add_run(outcome)

    def _add_run(self, outcome: Outcome) -> None:
        run = self.run
        if outcome.cache_hit:
            run.cache_hits += 1
            return
        run.requests += outcome.sent.requests
        run.retries += outcome.sent.retries
        run.repairs += outcome.sent.repairs
        run.tokens_in += outcome.usage.tokens_in
        run.tokens_out += outcome.usage.tokens_out
        run.cost_usd += outcome.cost_usd
        if not outcome.ok:
            run.budget_exhausted += outcome.error_class == BUDGET_EXHAUSTED
            run.circuit_open += outcome.error_class == CIRCUIT_OPEN
            run.batch_pending += outcome.error_class == BATCH_PENDING

    def as_dict(self) -> dict[str, Any]:
        """Sums, correct letters as `qa_letter_<L>`, per prompt under `by_prompt`, the run's under `run`."""
        totals: dict[str, Any] = {k: v for k, v in asdict(self).items() if k not in ("by_prompt", "run", "letters")}
        totals.update({f"qa_letter_{letter}": n for letter, n in sorted(self.letters.items())})
        totals["by_prompt"] = {prompt: {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost}
                               for prompt, (tokens_in, tokens_out, cost) in sorted(self.by_prompt.items())}
        totals["run"] = asdict(self.run)
        return totals


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def without_run(totals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`UsageTotals.as_dict()` split into what this version's rows cost and what this run sent
    (`run`), which go to separate manifest sections."""
    return {k: v for k, v in totals.items() if k != "run"}, totals.get("run", {})


def sum_counts(counts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Nested counters added key by key (LLM usage and run counters of every video)."""
    total: dict[str, Any] = {}
    for item in counts:
        _add_counts(total, item)
    return total


def _add_counts(total: dict[str, Any], counts: dict[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, dict):
            _add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
