"""Subtitles: timed text from a video's embedded text subtitle streams (decoded with PyAV) and
from sidecar files next to it (`movie.srt`, `movie.en.vtt`, `movie.fr.ass`, read with pysubs2),
as transcript lines in seconds from the video's first frame.

Embedded streams are on the container's clock (the first frame lies at `origin_s` on it); a
sidecar is on the player's clock, which starts at the container's start (`container_start_s`).
Styling (ASS override tags, line breaks) is dropped: a line holds the words said or shown.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import av
import pysubs2

from vidcorpus import storage
from vidcorpus.media.errors import MediaError

TEXT_SUBTITLE_CODECS = {"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"}
SIDECAR_EXTENSIONS = (".srt", ".vtt", ".ass", ".ssa")


class SubtitleError(MediaError):
    """A subtitle stream or sidecar file that cannot be read."""


@dataclass(frozen=True)
class Line:
    source: str            # embedded | sidecar | asr
    language: str | None
    start_s: float
    end_s: float
    text: str

    def row(self, video_id: str) -> dict:
        return {"video_id": video_id, "source": self.source, "language": self.language,
                "start_s": self.start_s, "end_s": self.end_s, "text": self.text}


def embedded_lines(source, origin_s: float) -> list[Line]:
    """Every line of every text subtitle stream in `source` (bitmap subtitles are skipped)."""
    with av.open(source, metadata_errors="ignore") as container:
        streams = [s for s in container.streams.subtitles if s.codec_context.name in TEXT_SUBTITLE_CODECS]
        if not streams:
            return []
        try:
            return sorted(_stream_lines(container, streams, origin_s), key=_order)
        except av.error.FFmpegError as exc:
            raise SubtitleError(f"an embedded subtitle stream could not be decoded: {exc}") from None


def _stream_lines(container, streams, origin_s: float) -> Iterator[Line]:
    languages = {s.index: _language(s.metadata) for s in streams}
    for packet in container.demux(streams):
        if packet.pts is None or not packet.size:
            continue
        start = float(packet.pts * packet.time_base) - origin_s
        end = start + float((packet.duration or 0) * packet.time_base)
        for subtitle in packet.decode():
            text = plain_text(_dialogue(subtitle))
            if text:
                yield Line("embedded", languages[packet.stream.index], round(start, 6), round(end, 6), text)


def _dialogue(subtitle) -> str:
    raw = getattr(subtitle, "dialogue", None) or getattr(subtitle, "text", None) or b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _language(metadata) -> str | None:
    tag = (metadata or {}).get("language")
    return None if tag in (None, "", "und") else tag


def sidecar_lines(video_uri: str, offset_s: float) -> list[Line]:
    """Lines of the subtitle files beside `video_uri` (`name.srt`, `name.<lang>.vtt`, …); each
    cue's time plus `offset_s` is its time from the video's first frame."""
    lines = []
    stem = posixpath.splitext(posixpath.basename(video_uri))[0]
    for uri in storage.files_named_like(video_uri):
        name = posixpath.basename(uri)
        base, ext = posixpath.splitext(name)
        if ext.lower() not in SIDECAR_EXTENSIONS:
            continue
        language = base[len(stem) + 1:] or None
        try:
            # the format is read from the content (a mislabelled file still parses; garbage does not)
            subs = pysubs2.SSAFile.from_string(storage.read_bytes(uri).decode("utf-8-sig", "replace"))
        except (pysubs2.exceptions.Pysubs2Error, ValueError) as exc:
            raise SubtitleError(f"sidecar {name} could not be parsed: {exc}") from None
        for event in subs:
            text = plain_text(event.text)
            if text and not event.is_comment and event.end > event.start:
                lines.append(Line("sidecar", language, round(event.start / 1000 + offset_s, 6),
                                  round(event.end / 1000 + offset_s, 6), text))
    return sorted(lines, key=_order)


def plain_text(ass_text: str) -> str:
    """ASS/SRT markup to plain words: override tags dropped, line breaks as spaces."""
    event = pysubs2.SSAEvent(text=ass_text)
    return " ".join(event.plaintext.split())


def _order(line: Line) -> tuple:
    return line.start_s, line.end_s, line.source, line.language or "", line.text
