"""Circuit breaker: after `llm.max_consecutive_errors` transport failures in a row (each one
already retried), stop sending for the rest of the run, so a dead endpoint costs seconds and
not hours of retries; the stage is then marked failed and a rerun picks up from the cache."""

from __future__ import annotations

import threading

CIRCUIT_OPEN = "CircuitOpen"


class CircuitBreaker:
    def __init__(self, max_consecutive_errors: int):
        self.limit = max_consecutive_errors
        self.consecutive = 0
        self.reason: str | None = None
        self._lock = threading.Lock()

    def record(self, transport_error: str | None) -> None:
        """One settled call: None for a response (whatever its content), else the error's text."""
        with self._lock:
            if transport_error is None:
                self.consecutive = 0
                return
            self.consecutive += 1
            if self.consecutive >= self.limit and self.reason is None:
                self.reason = (f"stopped after {self.consecutive} transport errors in a row "
                               f"(llm.max_consecutive_errors); the last: {transport_error}")

    @property
    def open(self) -> bool:
        return self.reason is not None
