"""What every LLM client of one worker process shares, so limits hold across annotators and videos.

- one event loop on its own thread ("llm-io") that carries every request: hundreds in flight
  cost no thread each, and the `llm.concurrency` cap is one semaphore on that loop, so the
  videos a worker annotates at once fill it together while each video's rounds stay in order;
- coalescing: a request identical to one already in flight waits for that one's answer instead
  of being sent again;
- the spend budget, the tokens-per-minute limiter and the circuit breaker, checked before each
  request is sent.

Callers on any thread hand coroutines to `submit` (a `concurrent.futures.Future` back) or `run`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from vidcorpus.annotators.breaker import CIRCUIT_OPEN, CircuitBreaker
from vidcorpus.annotators.budget import BUDGET_EXHAUSTED, Budget
from vidcorpus.annotators.ratelimit import TokenRate
from vidcorpus.config.llm import AnnotatorConfig

R = TypeVar("R")


class Engine:
    def __init__(self, concurrency: int, *, budget: Budget | None = None, rate: TokenRate | None = None,
                 breaker: CircuitBreaker | None = None, sleep: Callable[[float], None] = time.sleep):
        self.concurrency = concurrency
        self.budget = budget or Budget()
        self.rate = rate
        self.breaker = breaker or CircuitBreaker(2**31)
        self._sleep = sleep
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llm-io", daemon=True)
        self._thread.start()
        self.slots = asyncio.Semaphore(concurrency)
        """The in-flight cap; used on the engine's loop only."""
        self._in_flight: dict[str, asyncio.Future] = {}

    def __repr__(self) -> str:
        return f"Engine(concurrency={self.concurrency}, {self.budget!r}, breaker_open={self.breaker.open})"

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, R]) -> Future[R]:
        """Run `coro` on the engine's loop; its result (or exception) arrives in the future."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run `coro` on the engine's loop and wait for it (never call this from the loop itself)."""
        return self.submit(coro).result()

    async def once(self, key: str, make: Callable[[], Awaitable[R]]) -> tuple[R, bool]:
        """(make()'s result, False), or (the result of the identical call already running, True)."""
        running = self._in_flight.get(key)
        if running is not None:
            return await asyncio.shield(running), True
        task = asyncio.ensure_future(make())
        self._in_flight[key] = task
        try:
            return await task, False
        finally:
            del self._in_flight[key]

    async def pause(self, seconds: float) -> None:
        """Wait without holding the loop; an injected `sleep` (tests) is called instead."""
        if self._sleep is time.sleep:
            await asyncio.sleep(seconds)
        else:
            self._sleep(seconds)
            await asyncio.sleep(0)

    async def admit(self, tokens: int) -> None:
        """Wait until `llm.tokens_per_minute` lets `tokens` more input tokens go."""
        while self.rate is not None and (wait := self.rate.admit(tokens)) > 0:
            await self.pause(wait)

    def refusal(self) -> tuple[str, str] | None:
        """(error class, message) when nothing may be sent now: breaker open or budget spent."""
        if self.breaker.reason is not None:
            return CIRCUIT_OPEN, self.breaker.reason
        if (reason := self.budget.exhausted()) is not None:
            return BUDGET_EXHAUSTED, reason
        return None

    def close(self) -> None:
        """Stop the loop and its thread (clients close their connections first)."""
        if self.closed:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def engine_for(config: AnnotatorConfig, sleep: Callable[[float], None] = time.sleep) -> Engine:
    """The engine the `llm` section asks for: its in-flight cap, budget, rate limit and breaker."""
    rate = TokenRate(config.tokens_per_minute) if config.tokens_per_minute else None
    return Engine(config.concurrency, budget=Budget(config.max_usd, config.max_total_tokens), rate=rate,
                  breaker=CircuitBreaker(config.max_consecutive_errors), sleep=sleep)
