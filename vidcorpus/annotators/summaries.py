"""A video summary by map-reduce over clip captions, with one consistent name per entity.

Map: chunks of consecutive captions become partial summaries, each with the people and
objects it mentions. Reduce: groups of partials merge into one summary and one entity list
(canonical name plus aliases) until a single summary is left. As in MR. Video, the entity list
is then applied: captions are rewritten with the canonical names (`canonical`), and the QA and
CoT prompts receive the list with its aliases. A summary says which parts of the video it
covers: a chunk whose call failed leaves a gap, not a summary that claims the whole video.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from vidcorpus.annotators.captions import ClipCaption, speech_lines
from vidcorpus.annotators.client import LLMClient, LLMRequest, LLMResult, NonEmptyStr, Outcome, OutputModel
from vidcorpus.annotators.prompts import load_prompt

MAX_ENTITIES = 30
MAX_ALIASES = 8


class Entity(OutputModel):
    name: NonEmptyStr
    """The canonical name, used everywhere in the corpus."""
    aliases: list[str] = Field(max_length=MAX_ALIASES)
    """Other wordings the captions use for the same person or object."""
    description: str


class VideoSummary(OutputModel):
    schema_name = "video_summary"

    summary: NonEmptyStr
    entities: list[Entity] = Field(max_length=MAX_ENTITIES)

    def entity_names(self) -> str:
        return "; ".join(e.name for e in self.entities) or "(none)"

    def entity_lines(self) -> str:
        """One line per entity, `- name (also: alias, ...): description`, for the QA and CoT prompts."""
        return entity_lines(self.entities)


def entity_lines(entities: Sequence[Entity]) -> str:
    return "\n".join(
        f"- {e.name}" + (f" (also: {', '.join(e.aliases)})" if e.aliases else "") + (f": {e.description}" if e.description else "")
        for e in entities
    ) or "(none)"


def canonical(text: str, entities: Sequence[Entity]) -> str:
    """`text` with every alias of an entity replaced by the entity's canonical name (whole words,
    any case, longest alias first); an alias two entities share is left alone."""
    owners = Counter(a.strip().lower() for e in entities for a in {*e.aliases} if a.strip())
    names = {a.strip().lower(): e.name for e in entities for a in e.aliases
             if a.strip() and owners[a.strip().lower()] == 1 and a.strip().lower() != e.name.lower()}
    if not names:
        return text
    pattern = re.compile(r"\b(" + "|".join(re.escape(a) for a in sorted(names, key=lambda a: (-len(a), a))) + r")\b",
                         re.IGNORECASE)
    return pattern.sub(lambda m: names[m[1].lower()], text)


@dataclass(frozen=True)
class Partial:
    """A summary of the clips between start_s and end_s; `covers` are the chunk spans it holds."""

    start_s: float
    end_s: float
    result: LLMResult[VideoSummary]
    covers: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class SummaryRun:
    final: LLMResult[VideoSummary] | None
    outcomes: list[Outcome]
    """Every call made (map and reduce levels), for usage totals and failure rows."""
    covers: list[list[float]]
    """The spans of the video the final summary was made from (adjacent chunks joined)."""
    chunks: int
    """Chunks of captions asked for; the summary is complete when it covers all of them."""
    covered_chunks: int

    @property
    def complete(self) -> bool:
        return self.final is not None and self.covered_chunks == self.chunks


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
    covers = [((chunk[0][0]["start_s"], chunk[-1][0]["end_s"]),) for chunk in chunks]
    level = 0
    while True:
        results = client.map(requests)
        outcomes += results
        partials = [Partial(c[0][0], c[-1][1], r, c) for c, r in zip(covers, results) if r.ok]
        if len(partials) <= 1:
            held = partials[0].covers if partials else ()
            return SummaryRun(partials[0].result if partials else None, outcomes, _joined(held), len(chunks), len(held))
        level += 1
        groups = [partials[i:i + chunk_size] for i in range(0, len(partials), chunk_size)]
        requests = [reduce_request(video, g, level, i, versions.get("summary_reduce")) for i, g in enumerate(groups)]
        covers = [tuple(span for p in g for span in p.covers) for g in groups]


def _joined(spans: Sequence[tuple[float, float]]) -> list[list[float]]:
    """Spans in order with touching neighbours joined: where the summary's captions came from."""
    joined: list[list[float]] = []
    for start, end in spans:
        if joined and start <= joined[-1][1] + 1e-6:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return joined


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
    entities = entity_lines([e for p in group for e in p.result.value.entities])
    system, user = prompt.render(video_duration=_s(video["duration_s"]), partials=partials, entities=entities)
    item_id = f"{video['video_id']}_summary_reduce{level}_{position:04d}"
    return LLMRequest(prompt, _messages(system, user), VideoSummary, item_id=item_id)


def caption_lines(captioned: Sequence[tuple[dict, ClipCaption]], entities: Sequence[Entity] = ()) -> str:
    """One line per clip, `- clip_id [start-end s]: caption`, shared by the summary, QA and CoT
    prompts; with `entities`, in their canonical names."""
    lines = []
    for clip, cap in captioned:
        text = cap.caption + (f" Changes: {cap.changes_since_previous}" if cap.changes_since_previous else "")
        lines.append(f"- {clip['clip_id']} [{_s(clip['start_s'])}-{_s(clip['end_s'])} s]: {canonical(text, entities)}")
        lines += [f"  speech {line}" for line in speech_lines(clip)]
    return "\n".join(lines)



def _messages(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _s(seconds: float) -> str:
    return f"{seconds:.2f}"
