"""A live progress line for local builds, read from the work directory's completion markers,
so it works the same whichever runner mode runs the videos."""

from __future__ import annotations

import glob
import json
import os
import sys
import threading

from vidcorpus import storage
from vidcorpus.pipelines.staging import RESULT


class Progress:
    def __init__(self, work_dir: str, total: int, enabled: bool = True, interval_s: float = 1.0):
        self.pattern = os.path.join(storage.local_path(work_dir), "videos", "*", RESULT)
        self.total, self.interval = total, interval_s
        self.enabled = enabled and storage.is_local(work_dir)
        self._seen: dict[str, tuple[int, int]] = {}
        self._last_line = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Progress":
        self._before = set(glob.glob(self.pattern))
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._print(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._print()

    def _print(self, final: bool = False) -> None:
        for path in glob.glob(self.pattern):
            if path not in self._seen and path not in self._before:
                try:
                    with open(path) as f:
                        r = json.load(f)
                    self._seen[path] = (len(r["clips"]), len(r["failures"]))
                except (OSError, ValueError):
                    continue  # being written; next tick
        clips = sum(c for c, _ in self._seen.values())
        failures = sum(f for _, f in self._seen.values())
        line = f"videos {len(self._seen)}/{self.total} · clips {clips} · failures {failures}"
        tty = sys.stderr.isatty()
        if line != self._last_line or (final and tty):
            print(("\r" if tty else "") + line, end="\n" if final or not tty else "", file=sys.stderr, flush=True)
            self._last_line = line
