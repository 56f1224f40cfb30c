"""Batch mode (`llm.mode: batch`): each round's requests go through the OpenAI Batch API.

A client's calls wait on the futures of `BatchCollector.add`; once no new request has arrived for a
moment (every video of the bundle is waiting on this round), the pending requests are written
as Batch JSONL (`custom_id` = the cache key, `-repair` for a repair round), uploaded
(`files.create(purpose="batch")`, split at 50,000 lines or 100 MB), submitted
(`batches.create`, 24 h window), polled with a progress line, and their output and error files
collected. A line that failed or expired raises `BatchLineFailed`, which the client retries in
the next batch up to `llm.max_retries`; answers go to the cache like online ones.

The ids of submitted batches are recorded under `<cache>/batches/`, keyed by the set of
custom ids, so a killed build resubmits nothing: it resumes polling. With `llm.batch_wait:
false` (`build --no-wait`) the calls end as `BatchPending` once submitted and the build exits
with code 75; the same command run later collects the results. `export_requests` and
`import_results` run the same JSONL through `vllm run-batch` on an offline GPU node instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import openai
from apache_beam.io.filesystems import FileSystems

from vidcorpus import storage
from vidcorpus.config.llm import AnnotatorConfig

log = logging.getLogger(__name__)

MAX_LINES = 50_000
MAX_BYTES = 100 * 1024 * 1024
ENDPOINT = "/v1/chat/completions"
DONE = ("completed", "failed", "expired", "cancelled")
IMPORTED = "imported"
BATCHES = "batches"
BATCH_PENDING = "BatchPending"
PENDING = "pending.jsonl"
"""The last round submitted, as Batch JSONL: what `vidcorpus llm export` hands to `vllm run-batch`."""


class BatchLineFailed(Exception):
    """A batch line came back failed, expired or missing: retried in the next batch."""


class BatchPending(Exception):
    """Submitted and not waited for (`--no-wait`): run the same command later."""


def batch_line(custom_id: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def split_lines(lines: list[bytes], max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> Iterator[list[bytes]]:
    """Input files within the Batch API's limits."""
    part: list[bytes] = []
    size = 0
    for line in lines:
        if part and (len(part) == max_lines or size + len(line) > max_bytes):
            yield part
            part, size = [], 0
        part.append(line)
        size += len(line)
    if part:
        yield part


class BatchCollector:
    def __init__(self, client: openai.OpenAI | None, record_dir: str, *, poll_s: float = 30.0, gather_s: float = 0.5,
                 wait: bool = True, submit: bool = True, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.record_dir = record_dir
        self.poll_s = poll_s
        self.gather_s = gather_s
        self.wait = wait
        self.submit = submit
        self._sleep = sleep
        self._pending: dict[str, tuple[bytes, list[Future]]] = {}
        self._last = 0.0
        self._cond = threading.Condition()
        self._runner: threading.Thread | None = None

    def with_client(self, client: openai.OpenAI) -> BatchCollector:
        self.client = client
        return self

    def add(self, custom_id: str, body: dict[str, Any]) -> Future[dict[str, Any]]:
        """The completion (its JSON object) for one request, once its batch is done."""
        future: Future = Future()
        with self._cond:
            line = batch_line(custom_id, body)
            self._pending.setdefault(custom_id, (line, []))[1].append(future)
            self._last = time.monotonic()
            if self._runner is None:
                self._runner = threading.Thread(target=self._gather_and_run, daemon=True, name="llm-batch")
                self._runner.start()
        return future

    def _gather_and_run(self) -> None:
        while True:
            with self._cond:
                quiet = time.monotonic() - self._last
                if quiet >= self.gather_s:
                    pending, self._pending, self._runner = self._pending, {}, None
                    break
            time.sleep(self.gather_s - quiet)
        try:
            outputs = self.run({cid: line for cid, (line, _) in sorted(pending.items())})
        except BaseException as exc:  # noqa: BLE001 - every waiting call gets the error
            for _, futures in pending.values():
                for f in futures:
                    f.set_exception(exc)
            return
        for cid, (_, futures) in pending.items():
            for f in futures:
                if isinstance(outputs.get(cid), dict):
                    f.set_result(outputs[cid])
                else:
                    f.set_exception(BatchLineFailed(outputs.get(cid) or "no output line (batch failed or expired)"))

    # ---- one batch round ---------------------------------------------------------------------

    def run(self, lines: dict[str, bytes]) -> dict[str, dict[str, Any] | str]:
        """Submit (or resume) the batch of these lines (by custom id) and return each one's
        completion or error text."""
        custom_ids = sorted(lines)
        imported = self._imported(custom_ids)
        if imported is not None:
            storage.delete(storage.join(self.record_dir, PENDING))
            return imported
        record = self._record_path(custom_ids)
        batch_ids = self._recorded(record)
        if not batch_ids:
            storage.write_bytes(storage.join(self.record_dir, PENDING), b"".join(lines[c] for c in custom_ids))
            if not self.submit:
                raise BatchPending(f"{len(lines)} requests written to {storage.join(self.record_dir, PENDING)} "
                                   f"for `vidcorpus llm export`")
            batch_ids = self._submit([lines[c] for c in custom_ids], record)
        if not self.wait:
            raise BatchPending(f"batches {', '.join(batch_ids)} submitted")
        outputs: dict[str, dict[str, Any] | str] = {}
        for batch_id in batch_ids:
            outputs.update(self._collect(self._poll(batch_id)))
        storage.delete(storage.join(self.record_dir, PENDING))
        return outputs

    def _record_path(self, custom_ids: list[str]) -> str:
        digest = hashlib.sha256("\n".join(custom_ids).encode()).hexdigest()[:24]
        return storage.join(self.record_dir, f"{digest}.json")

    def _recorded(self, record: str) -> list[str]:
        if not storage.exists(record):
            return []
        batch_ids = json.loads(storage.read_bytes(record))["batches"]
        log.warning("resuming %d recorded batch(es) instead of submitting again: %s", len(batch_ids),
                    ", ".join(batch_ids))
        return batch_ids

    def _submit(self, lines: list[bytes], record: str) -> list[str]:
        batch_ids = []
        for i, part in enumerate(split_lines(lines)):
            upload = self.client.files.create(file=(f"vidcorpus-{i:05d}.jsonl", b"".join(part)), purpose="batch")
            batch = self.client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h")
            batch_ids.append(batch.id)
        storage.write_bytes(record, json.dumps({"batches": batch_ids, "requests": len(lines)}).encode())
        log.warning("submitted %d request(s) as batch(es) %s", len(lines), ", ".join(batch_ids))
        return batch_ids

    def _poll(self, batch_id: str):
        while True:
            batch = self.client.batches.retrieve(batch_id)
            counts = batch.request_counts
            done = f"{counts.completed + counts.failed}/{counts.total}" if counts else "?"
            log.warning("batch %s: %s, %s requests done", batch_id, batch.status, done)
            if batch.status in DONE:
                return batch
            self._sleep(self.poll_s)

    def _collect(self, batch) -> dict[str, dict[str, Any] | str]:
        outputs: dict[str, dict[str, Any] | str] = {}
        for file_id in (batch.error_file_id, batch.output_file_id):
            if file_id:
                outputs.update(parse_results(self.client.files.content(file_id).read()))
        return outputs

    def _imported(self, custom_ids: list[str]) -> dict[str, dict[str, Any] | str] | None:
        """Results brought in by `vidcorpus llm import`, when they cover these requests."""
        path = imported_results(self.record_dir.rsplit("/", 1)[0])
        if not storage.exists(path):
            return None
        outputs = parse_results(storage.read_bytes(path))
        return outputs if set(custom_ids) <= set(outputs) else None


def batch_collector(config: AnnotatorConfig, name: str, sleep: Callable[[float], None] = time.sleep) -> BatchCollector:
    """Annotator `name`'s collector, recording under `<cache>/batches/<name>/`."""
    root = config.cache_dir or tempfile.mkdtemp(prefix="vidcorpus-batches-")
    return BatchCollector(None, storage.join(root, BATCHES, name), poll_s=config.batch_poll_s,
                          wait=config.batch_wait, submit=config.batch_submit, sleep=sleep)


def imported_results(batches_dir: str) -> str:
    return storage.join(batches_dir, IMPORTED, "results.jsonl")


def export_requests(cache_dir: str) -> bytes:
    """Every annotator's pending round as one Batch JSONL (for `vllm run-batch -i`)."""
    root = storage.join(cache_dir, BATCHES)
    found = sorted(m.path for m in FileSystems.match([storage.join(root, "*", PENDING)])[0].metadata_list)
    return b"".join(storage.read_bytes(path) for path in found)


def import_results(cache_dir: str, data: bytes) -> int:
    """Results JSONL (from `vllm run-batch -o`) for the next build to collect; returns the line count."""
    path = imported_results(storage.join(cache_dir, BATCHES))
    earlier = storage.read_bytes(path) if storage.exists(path) else b""
    outputs = parse_results(data)
    storage.write_bytes(path, earlier + data.rstrip(b"\n") + b"\n")
    return len(outputs)


def parse_results(data: bytes) -> dict[str, dict[str, Any] | str]:
    """Batch output or error lines (OpenAI's or `vllm run-batch`'s): a completion or an error text each."""
    outputs: dict[str, dict[str, Any] | str] = {}
    for raw in data.splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        response = line.get("response") or {}
        if line.get("error") or response.get("status_code") != 200:
            error = line.get("error") or (response.get("body") or {}).get("error") or response.get("status_code")
            outputs[line["custom_id"]] = f"batch line failed: {json.dumps(error)[:500]}"
            continue
        outputs[line["custom_id"]] = response["body"]
    return outputs
