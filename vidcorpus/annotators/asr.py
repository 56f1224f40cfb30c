"""Speech recognition through the one LLM client: a video's audio, in chunks cut at quiet points
(`media.audio.speech_chunks`), sent to `/audio/transcriptions` (`verbose_json`, segment
timestamps); each chunk's segments are shifted back to video time and merged into transcript
lines. Cached, retried, budgeted and broken like every other call (`LLMClient.submit`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np

from vidcorpus.annotators.client import LLMClient, LLMFailure, OutputModel, TranscriptionRequest
from vidcorpus.annotators.prompts import Prompt
from vidcorpus.annotators.records import UsageTotals
from vidcorpus.media.audio import SPEECH_RATE, wav_bytes
from vidcorpus.media.subtitles import Line

ASR_PROMPT = Prompt("asr", 1, "", "")
"""Names the call in cache keys and provenance; a transcription request has no prompt text."""
CHUNKS_IN_FLIGHT = 8
"""A video's chunks are sent this many at a time, so its audio is never held whole."""


class Segment(OutputModel):
    start: float
    end: float
    text: str


class Transcription(OutputModel):
    schema_name = "transcription"
    language: str | None
    segments: list[Segment]


def transcribe_chunks(client: LLMClient, chunks: Iterable[tuple[float, np.ndarray]], item_id: str,
                      language: str | None = None) -> tuple[list[Line], list[LLMFailure], UsageTotals]:
    """Transcript lines of the chunks (start in seconds from the first video frame, 16 kHz mono
    samples) in video time, in order; the failures of chunks that got no answer; what the calls
    cost and what this run sent for them."""
    lines, failures, totals = [], [], UsageTotals()
    for group in _groups(iter(chunks), CHUNKS_IN_FLIGHT):
        requests = [TranscriptionRequest(ASR_PROMPT, wav_bytes(samples), Transcription, f"{item_id}@{start:.3f}",
                                         language) for start, samples in group]
        for (start, samples), outcome in zip(group, client.map(requests)):
            totals.add(outcome)
            if not outcome.ok:
                failures.append(outcome)
                continue
            lines += shifted_lines(outcome.value, start, samples.size / SPEECH_RATE, language)
    return sorted(lines, key=lambda line: (line.start_s, line.end_s, line.text)), failures, totals


def shifted_lines(transcription: Transcription, start_s: float, duration_s: float,
                  language: str | None) -> list[Line]:
    """A chunk's segments in video time, clamped to the chunk (and to the video's start)."""
    lines = []
    for segment in transcription.segments:
        text = " ".join(segment.text.split())
        a = max(0.0, start_s + max(0.0, segment.start))
        b = start_s + min(segment.end, duration_s)
        if text and b > a:
            lines.append(Line("asr", transcription.language or language, round(a, 3), round(b, 3), text))
    return lines


def _groups(items: Iterator, size: int) -> Iterator[list]:
    while group := list(islice(items, size)):
        yield group
