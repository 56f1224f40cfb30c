"""LLM stage: captions, summary, grounded QA and CoT for each segmented video, through the one
OpenAI-compatible engine (requests in flight across videos, retries, cache, budget, breaker).
Skipped, and said so, when no endpoint is configured.

A worker process holds one `VideoAnnotator` (Beam `Shared`), so `llm.concurrency` bounds the
whole process. The DoFn starts each video of a bundle on a thread as it arrives and hands the
results on as they finish (the rest in `finish_bundle`): many videos are annotated at once and
fill the in-flight cap together, while each video's rounds (captions → summary → QA → checks)
stay in order.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, Dict

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.shared import Shared

from vidcorpus import storage
from vidcorpus.annotators.records import sum_counts, without_run
from vidcorpus.config import BuildConfig
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.media.transcripts import lines_in, primary_lines, timed_speech
from vidcorpus.pipelines.scan import SPOOL
from vidcorpus.pipelines.staging import VideoResult, staging_dir
from vidcorpus.schemas import RecordError, check_record
from vidcorpus.schemas.records import failure_row

LLM_CACHE = "llm-cache"
VIDEOS_PER_SLOT = 4
"""Videos annotated at once per in-flight slot: a video spends rounds (summary, QA) with a single
request out, so the cap stays full only when more videos than slots are under way."""
MAX_VIDEOS_AT_ONCE = 512
_USERS: dict[int, int] = {}
"""Annotate instances using each shared annotator (by id), so the last one to go closes it."""
_USERS_LOCK = threading.Lock()


def llm_config(llm: AnnotatorConfig, work_dir: str) -> AnnotatorConfig:
    """The llm section with its cache under the work directory unless one is configured."""
    if llm.cache_dir:
        return llm
    return llm.model_copy(update={"cache_dir": storage.join(work_dir, LLM_CACHE)})


class Annotate(beam.DoFn):
    """A video's result → a new result with its annotation rows (clips' captions, summary, QA,
    CoT), their failures, token usage and cost, and what this run sent (`llm_run`)."""

    def __init__(self, llm: AnnotatorConfig, work_dir: str):
        self.llm = llm_config(llm, work_dir)
        self.work_dir = work_dir
        self._shared = Shared()
        self.tokens = Metrics.counter("vidcorpus", "llm_tokens")
        self.requests = Metrics.counter("vidcorpus", "llm_requests")

    def setup(self) -> None:
        from vidcorpus.annotators.video import VideoAnnotator

        tag = hashlib.sha256(self.llm.model_dump_json().encode()).hexdigest()
        self.annotator = self._shared.acquire(lambda: VideoAnnotator.from_config(self.llm), tag=tag)
        if any(c is not None and c.closed for c in self.annotator.clients.values()):  # set up again after teardown
            self.annotator = self._shared.acquire(lambda: VideoAnnotator.from_config(self.llm), tag=f"{tag}+{id(self)}")
        with _USERS_LOCK:
            _USERS[id(self.annotator)] = _USERS.get(id(self.annotator), 0) + 1
        self._videos = ThreadPoolExecutor(max_workers=min(VIDEOS_PER_SLOT * self.llm.concurrency, MAX_VIDEOS_AT_ONCE),
                                          thread_name_prefix="annotate")
        self._pending: deque[Future] = deque()

    def teardown(self) -> None:
        """The last instance using the process's annotator closes its connections."""
        self._videos.shutdown(wait=True)
        with _USERS_LOCK:
            _USERS[id(self.annotator)] -= 1
            last = _USERS[id(self.annotator)] == 0
            if last:
                del _USERS[id(self.annotator)]
        if last:
            self.annotator.close()

    def start_bundle(self) -> None:
        self._pending = deque()

    def process(self, result: VideoResult):
        if not (result["video"] and result["clips"]):
            yield result
            return
        self._pending.append(self._videos.submit(annotate_result, result, self.annotator, self.work_dir))
        while self._pending and self._pending[0].done():
            yield self._counted(self._pending.popleft().result())

    def finish_bundle(self):
        while self._pending:
            yield GlobalWindows.windowed_value(self._counted(self._pending.popleft().result()))

    def _counted(self, result: VideoResult) -> VideoResult:
        run = result.get("llm_run", {})
        self.tokens.inc(run.get("tokens_in", 0) + run.get("tokens_out", 0))
        self.requests.inc(run.get("requests", 0))
        return result


class AnnotateOnWorker(beam.PTransform):
    """`llm.backend: vllm-worker`: the same step through RunInference, with a vLLM server on the
    worker as the model (and the accelerator resource hint)."""

    def __init__(self, cfg: BuildConfig, work_dir: str):
        super().__init__()
        self.llm, self.work_dir = llm_config(cfg.llm, work_dir), work_dir

    def expand(self, results):
        from apache_beam.ml.inference.base import RunInference

        from vidcorpus.annotators.vllm_worker import VllmAnnotateHandler

        handler = VllmAnnotateHandler(self.llm, functools.partial(annotate_result, work_dir=self.work_dir))
        return results | "AnnotateOnWorker" >> RunInference(handler).with_output_types(Dict[str, Any])


def annotate_result(result: VideoResult, annotator, work_dir: str) -> VideoResult:
    """A new result: the video's with its annotation rows, their failures, usage and this run's sends."""
    video = result["video"]
    staged = staging_dir(work_dir, video["video_id"])
    clips = with_speech_lines(result["clips"], result["tables"].get("transcripts", []), video)
    annotations, failures, usage = annotator.annotate(video, clips, clip_frames(result, staged, annotator.config))
    usage, run = without_run(usage)
    run = {**run, "breaker_open": int(_breaker_open(annotator))}
    rows, rejected = [], []
    for row in annotations:
        try:
            rows.append(check_record("annotations", row))
        except RecordError as exc:
            rejected.append(failure_row(video["uri"], "validate", exc, video["video_id"], row["ann_id"]))
    return {**result, "tables": {**result["tables"], "annotations": rows},
            "failures": result["failures"] + rejected + failures,
            "usage": sum_counts([result.get("usage", {}), usage]), "llm_run": sum_counts([result.get("llm_run", {}), run])}


def with_speech_lines(clips: list[dict[str, Any]], transcripts: list[dict[str, Any]],
                      video: dict[str, Any]) -> list[dict[str, Any]]:
    """The clips as the annotators see them: each with `speech_lines`, the timed lines of the
    video's primary transcript track inside it (what prompts show as speech)."""
    streams = video.get("audio_streams") or []
    lines = primary_lines(transcripts, streams[0]["language"] if streams else None)
    return [{**clip, "speech_lines": timed_speech(lines_in(lines, clip["start_s"], clip["end_s"]))} for clip in clips]


def _breaker_open(annotator) -> bool:
    """Whether the process's circuit breaker had stopped all sending when this video ended."""
    return any(c is not None and c.engine.breaker.open for c in annotator.clients.values())


def clip_frames(result: VideoResult, staged: str, llm: AnnotatorConfig) -> dict[str, list[tuple[float, bytes]]]:
    """Each clip's (time, JPEG) frames for the model: `llm.frames_per_s` of the decode pass's
    candidates, read from the staged spool; a result staged without candidate references
    falls back to the clip's keyframes."""
    from vidcorpus.annotators.frames import frames_for, sample_positions

    frames: dict[str, list[tuple[float, bytes]]] = {}
    spool = storage.join(staged, SPOOL)
    with storage.open_read(spool) if storage.exists(spool) else nullcontext() as f:
        for clip in result["clips"]:
            files = result["files"].get(clip["clip_id"], {})
            refs = files.get("candidates")
            if refs is None or f is None:
                times = [k["timestamp_s"] for k in clip["keyframes"]]
                frames[clip["clip_id"]] = [(t, storage.read_bytes(storage.join(staged, n)))
                                           for t, n in zip(times, files.get("jpg", []))]
                continue
            n = frames_for(clip["end_s"] - clip["start_s"], llm.frames_per_s, llm.min_frames)
            picked = [refs[p] for p in sample_positions([r[0] for r in refs], clip["start_s"], clip["end_s"], n)]
            frames[clip["clip_id"]] = [(t, _read_at(f, int(offset), int(length))) for t, offset, length in picked]
    return frames


def _read_at(f, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)
