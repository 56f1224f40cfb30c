"""Spend caps for one worker process: `llm.max_usd` and `llm.max_total_tokens`.

Only what this run sends is charged (cache hits are free), so a rerun with a larger budget
continues where the last one stopped. The check comes before a request and the charge after
its response, so with many requests in flight the spend can pass the cap by at most what those
requests cost.
"""

from __future__ import annotations

import threading

BUDGET_EXHAUSTED = "BudgetExhausted"


class Budget:
    def __init__(self, max_usd: float | None = None, max_tokens: int | None = None):
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Budget(max_usd={self.max_usd}, max_tokens={self.max_tokens}, spent_usd={self.spent_usd:.4f})"

    def charge(self, usd: float, tokens: int) -> None:
        with self._lock:
            self.spent_usd += usd
            self.spent_tokens += tokens

    def exhausted(self) -> str | None:
        """Why nothing more may be sent, or None while the budget lasts."""
        with self._lock:
            if self.max_usd is not None and self.spent_usd >= self.max_usd:
                return f"budget exhausted: spent ${self.spent_usd:.4f} of llm.max_usd ${self.max_usd:g}"
            if self.max_tokens is not None and self.spent_tokens >= self.max_tokens:
                return f"budget exhausted: used {self.spent_tokens} tokens of llm.max_total_tokens {self.max_tokens}"
        return None
