"""`llm.tokens_per_minute`: a sliding one-minute window over the input tokens sent.

Input tokens are estimated before sending the way OpenAI counts them roughly (four characters
of text a token, 85 per low-detail image); a request larger than the whole limit is let through
alone once the window is empty, so it cannot wait forever.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

WINDOW_S = 60.0
TOKENS_PER_IMAGE = 85


def estimate_input_tokens(messages: list[dict[str, Any]]) -> int:
    chars, images = 0, 0
    for message in messages:
        content = message.get("content") or ""
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for part in parts:
            if part.get("type") == "image_url":
                images += 1
            else:
                chars += len(part.get("text") or "")
    return chars // 4 + 1 + TOKENS_PER_IMAGE * images


class TokenRate:
    def __init__(self, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.limit = tokens_per_minute
        self._clock = clock
        self._sent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> float:
        """0 once `tokens` more fit in the last minute's window (they are then counted), else
        the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0][0] <= now - WINDOW_S:
                self._sent.popleft()
            used = sum(n for _, n in self._sent)
            if not self._sent or used + tokens <= self.limit:
                self._sent.append((now, tokens))
                return 0.0
            return max(self._sent[0][0] + WINDOW_S - now, 0.01)
