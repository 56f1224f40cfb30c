"""The `asr` section: speech recognition over an OpenAI-compatible `/v1/audio/transcriptions`
endpoint (OpenAI, vLLM, faster-whisper-server). Off unless enabled."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field

from vidcorpus.config.base import Section
from vidcorpus.config.llm import AnnotatorConfig, Endpoint


class AsrConfig(Section):
    enabled: bool = False
    """Transcribe each video's audio track (`audio.stream`) into the `transcripts` table."""
    model: str = "whisper-1"
    base_url: str | None = None
    """None: `llm.base_url`, then `OPENAI_BASE_URL`."""
    api_key_env: str | None = None
    """None: `llm.api_key_env`."""
    language: str | None = None
    """ISO 639-1 hint sent with each request; None lets the model detect it."""
    chunk_s: float = Field(300.0, ge=5)
    """Audio is sent in chunks of about this length, cut at the quietest point of their last fifth."""
    force: bool = False
    """Transcribe videos that already have subtitles too (else they are skipped)."""


def asr_endpoint(asr: AsrConfig, llm: AnnotatorConfig, env: Mapping[str, str] | None = None) -> Endpoint | None:
    """The transcription endpoint, or None when ASR is off or no endpoint is configured."""
    env = os.environ if env is None else env
    if not asr.enabled:
        return None
    base_url = asr.base_url or llm.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = env.get(asr.api_key_env or llm.api_key_env) or None
    if base_url is None and api_key is None and llm.api_key_secret is None:
        return None
    return Endpoint(name="asr", base_url=base_url, model=asr.model, temperature=0.0, max_tokens=1, seed=None,
                    api_key=api_key)
