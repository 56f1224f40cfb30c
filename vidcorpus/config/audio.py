"""The `audio` section: which sound clip MP4s carry."""

from __future__ import annotations

from pydantic import Field

from vidcorpus.config.base import Section


class AudioConfig(Section):
    enabled: bool = True
    """Clip MP4s carry the source's sound (copied with a copied picture, else AAC); false: video only."""
    stream: int = Field(0, ge=0)
    """Which audio stream clips carry, counted among the audio streams (0: the first)."""
