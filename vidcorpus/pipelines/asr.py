"""ASR stage (`asr.enabled`): each video's audio track transcribed through the one LLM client
(`annotators.asr`) into `transcripts` rows with source `asr`, and its clips' `speech` redone.
A video with subtitles is skipped unless `asr.force`. Transcription is always sent online, also
when `llm.mode` is batch: the Batch API does not serve audio. Not staged: a rerun reads the
audio again and finds every answer in the LLM cache."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from vidcorpus.annotators.records import sum_counts, without_run
from vidcorpus.config import BuildConfig
from vidcorpus.config.asr import asr_endpoint
from vidcorpus.media.audio import chosen_track, speech_chunks
from vidcorpus.media.transcripts import with_speech
from vidcorpus.pipelines.annotate import llm_config
from vidcorpus.pipelines.scan import open_source
from vidcorpus.pipelines.staging import VideoResult
from vidcorpus.schemas import check_record
from vidcorpus.schemas.records import failure_row

log = logging.getLogger(__name__)


def transcribe_result(result: VideoResult, client, cfg: BuildConfig) -> VideoResult:
    """A new result with the video's ASR lines and its clips' speech, or the same result when
    there is nothing to transcribe (no video, no audio track, subtitles and no `asr.force`)."""
    from vidcorpus.annotators.asr import transcribe_chunks

    video = result["video"]
    rows = result["tables"].get("transcripts", [])
    track = chosen_track(video["audio_streams"], cfg.audio.stream) if video else None
    if track is None or (rows and not cfg.asr.force):
        return result
    failures = []
    try:
        chunks = speech_chunks(open_source(video["uri"]), track["index"], video["start_time_s"], cfg.asr.chunk_s)
        lines, failed, totals = transcribe_chunks(client, chunks, video["video_id"], cfg.asr.language)
    except Exception as exc:  # noqa: BLE001 - an unreadable track costs a row, not the video
        log.warning("%s failed at asr: %s: %s", video["uri"], type(exc).__name__, exc)
        return {**result, "failures": result["failures"] + [failure_row(video["uri"], "asr", exc, video["video_id"])]}
    failures = [failure_row(video["uri"], "asr", (f.error_class, f.message), video["video_id"], f.item_id)
                for f in failed]
    rows = rows + [check_record("transcripts", line.row(video["video_id"])) for line in lines]
    usage, run = without_run(totals.as_dict())
    return {**result, "clips": with_speech(result["clips"], rows, track["language"]),
            "tables": {**result["tables"], "transcripts": rows}, "failures": result["failures"] + failures,
            "usage": sum_counts([result.get("usage", {}), usage]), "llm_run": sum_counts([result.get("llm_run", {}), run])}


class Transcribe(beam.DoFn):
    """A video's result → the same with its ASR transcript (see `transcribe_result`)."""

    def __init__(self, cfg: BuildConfig, work_dir: str):
        self.cfg = cfg.model_copy(update={"llm": llm_config(cfg.llm, work_dir)})
        self.lines = Metrics.counter("vidcorpus", "asr_lines")

    def setup(self) -> None:
        from vidcorpus.annotators.client import LLMClient
        from vidcorpus.annotators.engine import engine_for

        self.engine = engine_for(self.cfg.llm)  # llm.concurrency, budgets, tokens per minute, breaker
        self.client = LLMClient.from_config(self.cfg.llm, "asr", endpoint=asr_endpoint(self.cfg.asr, self.cfg.llm),
                                            engine=self.engine)

    def teardown(self) -> None:
        self.client.close()
        self.engine.close()

    def process(self, result: VideoResult):
        out = transcribe_result(result, self.client, self.cfg)
        if out is not result:
            self.lines.inc(sum(r["source"] == "asr" for r in out["tables"]["transcripts"]))
        yield out
