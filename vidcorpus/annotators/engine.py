"""What every LLM client of one worker process shares, so limits hold across annotators and videos.

- one in-flight cap (`llm.concurrency`) and one thread pool that runs requests under it, so the
  videos a worker annotates at once fill the cap together, each video's rounds still in order;
- coalescing: a request identical to one already in flight waits for that one's answer instead
  of being sent again;
- the spend budget, the tokens-per-minute limiter and the circuit breaker, checked before each
  request is sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from vidcorpus.annotators.breaker import CIRCUIT_OPEN, CircuitBreaker
from vidcorpus.annotators.budget import BUDGET_EXHAUSTED, Budget
from vidcorpus.annotators.ratelimit import TokenRate
from vidcorpus.config.llm import AnnotatorConfig

A = TypeVar("A")
R = TypeVar("R")


class Engine:
    def __init__(self, concurrency: int, *, budget: Budget | None = None, rate: TokenRate | None = None,
                 breaker: CircuitBreaker | None = None):
        self.concurrency = concurrency
        self.slots = threading.BoundedSemaphore(concurrency)
        self.budget = budget or Budget()
        self.rate = rate
        self.breaker = breaker or CircuitBreaker(2**31)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm")
        self._in_flight: dict[str, Future] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Engine(concurrency={self.concurrency}, {self.budget!r}, breaker_open={self.breaker.open})"

    def map(self, fn: Callable[[A], R], items: Iterable[A]) -> list[R]:
        """fn over items on the shared pool; results in item order."""
        items = list(items)
        if len(items) <= 1:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def once(self, key: str, fn: Callable[[], R]) -> tuple[R, bool]:
        """(fn's result, False), or (the result of the identical call already running, True)."""
        with self._lock:
            running = self._in_flight.get(key)
            if running is None:
                mine: Future = Future()
                self._in_flight[key] = mine
        if running is not None:
            return running.result(), True
        try:
            result = fn()
            mine.set_result(result)
            return result, False
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._in_flight[key]

    def refusal(self) -> tuple[str, str] | None:
        """(error class, message) when nothing may be sent now: breaker open or budget spent."""
        if self.breaker.reason is not None:
            return CIRCUIT_OPEN, self.breaker.reason
        if (reason := self.budget.exhausted()) is not None:
            return BUDGET_EXHAUSTED, reason
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def engine_for(config: AnnotatorConfig, sleep: Callable[[float], None] = time.sleep) -> Engine:
    """The engine the `llm` section asks for: its in-flight cap, budget, rate limit and breaker."""
    rate = TokenRate(config.tokens_per_minute, sleep=sleep) if config.tokens_per_minute else None
    return Engine(config.concurrency, budget=Budget(config.max_usd, config.max_total_tokens), rate=rate,
                  breaker=CircuitBreaker(config.max_consecutive_errors))
