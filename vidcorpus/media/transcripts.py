"""Transcript rows (`transcripts` table) as speech: which track speaks for a video, and which of
its lines fall inside a span. Pure functions over rows, shared by segmenting, annotation and the
code-made speech tasks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

SOURCE_ORDER = ("embedded", "sidecar", "asr")
"""Which track speaks for a video when several exist (after the audio track's language)."""


def primary_lines(rows: Iterable[dict[str, Any]], language: str | None = None) -> list[dict[str, Any]]:
    """The lines of one track, (source, language), in time order: the one in the audio's
    `language` if any, else by SOURCE_ORDER, then the track with most lines, then by name."""
    tracks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        tracks.setdefault((row["source"], row.get("language") or ""), []).append(row)
    if not tracks:
        return []

    def rank(key: tuple[str, str]) -> tuple:
        source, lang = key
        order = SOURCE_ORDER.index(source) if source in SOURCE_ORDER else len(SOURCE_ORDER)
        return (not (language and lang == language), order, -len(tracks[key]), key)

    return sorted(tracks[min(tracks, key=rank)], key=lambda r: (r["start_s"], r["end_s"], r["text"]))


def lines_in(lines: Sequence[dict[str, Any]], start_s: float, end_s: float) -> list[dict[str, Any]]:
    """The lines whose midpoint lies in [start_s, end_s): each line belongs to one clip."""
    return [line for line in lines if start_s <= (line["start_s"] + line["end_s"]) / 2 < end_s]


def speech_text(lines: Sequence[dict[str, Any]]) -> str | None:
    """The lines' words, in order, as one string (None when nothing is said)."""
    return " ".join(line["text"] for line in lines) or None


def timed_speech(lines: Sequence[dict[str, Any]]) -> str:
    """The lines as `[start-end s] text`, one a line, for prompts."""
    return "\n".join(f"[{line['start_s']:.1f}-{line['end_s']:.1f} s] {line['text']}" for line in lines)


def speech_seconds(rows: Iterable[dict[str, Any]]) -> float:
    """Seconds covered by at least one line (overlaps counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((r["start_s"], r["end_s"]) for r in rows):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def with_speech(clips: Sequence[dict[str, Any]], rows: Iterable[dict[str, Any]],
                language: str | None) -> list[dict[str, Any]]:
    """The clips, each with `speech`: the words of the video's primary track said inside it."""
    lines = primary_lines(rows, language)
    return [{**clip, "speech": speech_text(lines_in(lines, clip["start_s"], clip["end_s"]))} for clip in clips]


def speech_coverage(transcripts: Iterable[dict[str, Any]], durations: dict[str, float]) -> dict[str, Any]:
    """What a release's transcripts hold: lines by source and by language, seconds with speech
    (any track; overlaps counted once per video) and their share of the videos' duration."""
    by_video: dict[str, list[dict[str, Any]]] = {}
    sources: dict[str, int] = {}
    languages: dict[str, int] = {}
    for row in transcripts:
        by_video.setdefault(row["video_id"], []).append(row)
        sources[row["source"]] = sources.get(row["source"], 0) + 1
        language = row.get("language") or "unknown"
        languages[language] = languages.get(language, 0) + 1
    speech_s = sum(min(speech_seconds(rows), durations.get(video, float("inf"))) for video, rows in by_video.items())
    video_s = sum(durations.values())
    return {"lines": sum(sources.values()), "videos_with_speech": len(by_video), "by_source": dict(sorted(sources.items())),
            "languages": dict(sorted(languages.items())), "speech_s": round(speech_s, 3), "video_s": round(video_s, 3),
            "share": round(speech_s / video_s, 4) if video_s else 0.0}
