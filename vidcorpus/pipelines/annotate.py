"""LLM stage: captions, summary, grounded QA and CoT for each segmented video, through the one
OpenAI-compatible client (bounded concurrency, retries, cache). Skipped, and said so, when no
endpoint is configured."""

from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import Any, Dict

import apache_beam as beam
from apache_beam.metrics import Metrics

from vidcorpus import storage
from vidcorpus.config import BuildConfig
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.pipelines.scan import SPOOL
from vidcorpus.pipelines.staging import VideoResult, staging_dir
from vidcorpus.schemas import RecordError, check_record
from vidcorpus.schemas.records import failure_row

LLM_CACHE = "llm-cache"


def llm_config(llm: AnnotatorConfig, work_dir: str) -> AnnotatorConfig:
    """The llm section with its cache under the work directory unless one is configured."""
    if llm.cache_dir:
        return llm
    return llm.model_copy(update={"cache_dir": storage.join(work_dir, LLM_CACHE)})


class Annotate(beam.DoFn):
    """A video's result → a new result with its annotation rows (clips' captions, summary, QA,
    CoT), their failures and token usage."""

    def __init__(self, llm: AnnotatorConfig, work_dir: str):
        self.llm = llm_config(llm, work_dir)
        self.work_dir = work_dir
        self.tokens = Metrics.counter("vidcorpus", "llm_tokens")

    def setup(self) -> None:
        from vidcorpus.annotators.video import VideoAnnotator
        self.annotator = VideoAnnotator.from_config(self.llm)

    def teardown(self) -> None:
        self.annotator.close()

    def process(self, result: VideoResult):
        if result["video"] and result["clips"]:
            result = annotate_result(result, self.annotator, self.work_dir)
            self.tokens.inc(result["usage"].get("tokens_in", 0) + result["usage"].get("tokens_out", 0))
        yield result


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
    """A new result: the video's with its annotation rows, their failures and the token usage."""
    video = result["video"]
    staged = staging_dir(work_dir, video["video_id"])
    annotations, failures, usage = annotator.annotate(video, result["clips"], clip_frames(result, staged, annotator.config))
    rows, rejected = [], []
    for row in annotations:
        try:
            rows.append(check_record("annotations", row))
        except RecordError as exc:
            rejected.append(failure_row(video["uri"], "validate", exc, video["video_id"], row["ann_id"]))
    return {**result, "tables": {**result["tables"], "annotations": rows},
            "failures": result["failures"] + rejected + failures, "usage": dict(usage)}


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
