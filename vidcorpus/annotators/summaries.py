"""A video summary by map-reduce over clip captions, with one consistent name per entity.

Map: chunks of consecutive captions become partial summaries, each with the people and
objects it mentions. Reduce: groups of partials merge into one summary and one entity list
(canonical name plus aliases) until a single summary is left. As in MR. Video, the entity list
is then reused: the QA and CoT prompts are told to use exactly these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vidcorpus.annotators.captions import ClipCaption
from vidcorpus.annotators.client import LLMClient, LLMRequest, LLMResult, NonEmptyStr, Outcome, OutputModel
from vidcorpus.annotators.prompts import load_prompt


class Entity(OutputModel):
    name: NonEmptyStr
    aliases: list[str]
    description: str


class VideoSummary(OutputModel):
    schema_name = "video_summary"

    summary: NonEmptyStr
    entities: list[Entity]

    def entity_names(self) -> str:
        return "; ".join(e.name for e in self.entities) or "(none)"


@dataclass(frozen=True)
class Partial:
    """A summary of the clips between start_s and end_s."""

    start_s: float
    end_s: float
    result: LLMResult[VideoSummary]


@dataclass(frozen=True)
class SummaryRun:
    final: LLMResult[VideoSummary] | None
    outcomes: list[Outcome]
    """Every call made (map and reduce levels), for usage totals and failure rows."""


def summarize_video(
    client: LLMClient,
    video: dict,
    captioned: Sequence[tuple[dict, ClipCaption]],
    *,
    chunk_size: int = 8,
    prompt_versions: dict[str, int] | None = None,
) -> SummaryRun:
    """Map chunks of captions to partial summaries, then reduce groups of them to one."""
    versions = prompt_versions or {}
    outcomes: list[Outcome] = []
    chunks = [list(captioned[i:i + chunk_size]) for i in range(0, len(captioned), chunk_size)]
    requests = [chunk_request(video, chunk, i, versions.get("summary_chunk")) for i, chunk in enumerate(chunks)]
    spans = [(chunk[0][0]["start_s"], chunk[-1][0]["end_s"]) for chunk in chunks]
    level = 0
    while True:
        results = client.map(requests)
        outcomes += results
        partials = [Partial(s, e, r) for (s, e), r in zip(spans, results) if r.ok]
        if len(partials) <= 1:
            return SummaryRun(partials[0].result if partials else None, outcomes)
        level += 1
        groups = [partials[i:i + chunk_size] for i in range(0, len(partials), chunk_size)]
        requests = [reduce_request(video, g, level, i, versions.get("summary_reduce")) for i, g in enumerate(groups)]
        spans = [(g[0].start_s, g[-1].end_s) for g in groups]


def chunk_request(video: dict, chunk: Sequence[tuple[dict, ClipCaption]], position: int, version: int | None = None) -> LLMRequest[VideoSummary]:
    prompt = load_prompt("summary_chunk", version)
    system, user = prompt.render(
        first_s=_s(chunk[0][0]["start_s"]),
        last_s=_s(chunk[-1][0]["end_s"]),
        video_duration=_s(video["duration_s"]),
        captions=caption_lines(chunk),
    )
    return LLMRequest(prompt, _messages(system, user), VideoSummary, item_id=f"{video['video_id']}_summary_map{position:04d}")


def reduce_request(video: dict, group: Sequence[Partial], level: int, position: int, version: int | None = None) -> LLMRequest[VideoSummary]:
    prompt = load_prompt("summary_reduce", version)
    partials = "\n".join(f"[{_s(p.start_s)}-{_s(p.end_s)} s] {p.result.value.summary}" for p in group)
    entities = "\n".join(
        f"- {e.name}" + (f" (also: {', '.join(e.aliases)})" if e.aliases else "") + f": {e.description}"
        for p in group for e in p.result.value.entities
    ) or "(none)"
    system, user = prompt.render(video_duration=_s(video["duration_s"]), partials=partials, entities=entities)
    item_id = f"{video['video_id']}_summary_reduce{level}_{position:04d}"
    return LLMRequest(prompt, _messages(system, user), VideoSummary, item_id=item_id)


def caption_lines(captioned: Sequence[tuple[dict, ClipCaption]]) -> str:
    """One line per clip, `- clip_id [start-end s]: caption`, shared by the summary, QA and CoT prompts."""
    lines = []
    for clip, cap in captioned:
        text = cap.caption + (f" Changes: {cap.changes_since_previous}" if cap.changes_since_previous else "")
        lines.append(f"- {clip['clip_id']} [{_s(clip['start_s'])}-{_s(clip['end_s'])} s]: {text}")
    return "\n".join(lines)


def _messages(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _s(seconds: float) -> str:
    return f"{seconds:.2f}"
