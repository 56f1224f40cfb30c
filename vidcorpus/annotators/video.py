"""Annotate one video end to end: captions -> summary -> QA -> CoT, blind and visual checks -> verdicts.

`VideoAnnotator.annotate(video, clips, frames)` takes each clip's timestamped frames (sampled
from the decode pass's candidates, `annotators.frames`) and returns (annotations, failures,
usage). It never raises for an endpoint's or a model's misbehaviour, so the pipeline can call it
in one Beam DoFn per video: every call that fails becomes a failure row, every stage uses what
the stages before it managed to produce, every QA item carries the verdicts of its checks, and
every item a check drops becomes a failure row that holds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidcorpus.annotators import verifiers
from vidcorpus.annotators.captions import (
    ClipCaption,
    Previous,
    caption_request,
    clip_parts,
    merge_request,
)
from vidcorpus.annotators.client import LLMClient, LLMResult, Outcome, Usage
from vidcorpus.annotators.cot import cot_request
from vidcorpus.annotators.engine import engine_for
from vidcorpus.annotators.frames import Frame
from vidcorpus.annotators.qa import QAItem, qa_request, qa_windows, shuffle_options
from vidcorpus.annotators.records import (
    UsageTotals,
    annotation_record,
    split_usage,
)
from vidcorpus.annotators.summaries import VideoSummary, canonical, summarize_video
from vidcorpus.config.llm import ANNOTATORS, AnnotatorConfig
from vidcorpus.ids import child_id
from vidcorpus.schemas.records import failure_row

Captioned = list[tuple[dict, ClipCaption]]


class VideoAnnotator:
    """Holds one client per annotator; build it once per worker (e.g. in `DoFn.setup`)."""

    def __init__(self, config: AnnotatorConfig, clients: Mapping[str, LLMClient | None]):
        self.config = config
        self.clients = {name: clients.get(name) for name in ANNOTATORS}

    @classmethod
    def from_config(
        cls,
        config: AnnotatorConfig,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> VideoAnnotator:
        """Clients share one engine, so `config.concurrency` and the limits hold across annotators."""
        engine = engine_for(config, sleep=sleep)
        return cls(config, {
            name: LLMClient.from_config(config, name, env=env, sleep=sleep, engine=engine) for name in ANNOTATORS
        })

    def __repr__(self) -> str:
        active = [name for name, client in self.clients.items() if client is not None]
        return f"VideoAnnotator(annotators={active})"

    def close(self) -> None:
        """Close every client's connections, then the engines they share (their loop threads)."""
        clients = [c for c in self.clients.values() if c is not None]
        for client in clients:
            client.close()
        for engine in {id(c.engine): c.engine for c in clients}.values():
            engine.close()

    def annotate(
        self, video: dict, clips: Sequence[dict], frames: Mapping[str, Sequence[Frame]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
        """(annotation rows, failure rows, usage totals) for one video; `frames` maps a clip id
        to its (timestamp, JPEG) frames."""
        frames = {cid: sorted((Frame(*f) for f in fs), key=lambda f: f.t) for cid, fs in frames.items()}
        run = _VideoRun(self.config, self.clients, video, clips, frames)
        clip_captions = run.captions()
        summary = run.summary([(c.clip, c.value) for c in clip_captions])
        run.caption_rows(clip_captions, summary)
        run.questions([(c.clip, c.value) for c in clip_captions], summary)
        return run.annotations, run.failures, run.totals.as_dict()


def annotate_video(
    video: dict, clips: Sequence[dict], frames: Mapping[str, Sequence[Frame]], annotator: VideoAnnotator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    return annotator.annotate(video, clips, frames)


@dataclass(frozen=True)
class CaptionRun:
    """One clip's caption calls: its windows' outcomes, then the merge's when there were several."""

    clip: dict
    frames: list[Frame]
    windows: int
    outcomes: list[Outcome]
    previous: Previous | None
    """What the first window was differential against."""

    @property
    def final(self) -> LLMResult | None:
        """The clip's caption: the last call's, when every call succeeded."""
        done = self.outcomes and all(o.ok for o in self.outcomes) and len(self.outcomes) == self.windows + (self.windows > 1)
        return self.outcomes[-1] if done else None


@dataclass(frozen=True)
class ClipCaptioned:
    clip: dict
    value: ClipCaption
    run: CaptionRun


class _VideoRun:
    """The accumulators of one `annotate` call: rows so far, failures so far, usage so far."""

    def __init__(self, config: AnnotatorConfig, clients: Mapping[str, LLMClient | None], video: dict,
                 clips: Sequence[dict], frames: dict[str, list[Frame]]):
        self.config = config
        self.clients = clients
        self.video = video
        self.video_id = video["video_id"]
        self.clips_by_id = {c["clip_id"]: c for c in clips}
        self.clips = sorted(clips, key=lambda c: c["index"])
        self.frames = frames
        self.duration_s = video.get("duration_s") or max((c["end_s"] for c in clips), default=0.0)
        self.annotations: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.totals = UsageTotals()

    # ---- captions ----------------------------------------------------------------------------

    def captions(self) -> list[ClipCaptioned]:
        """Every clip with frames captioned: in order, each against the previous caption, in
        differential mode; all at once otherwise."""
        client = self.clients["caption"]
        if client is None:
            return []
        todo = []
        for clip in self.clips:
            if self.frames.get(clip["clip_id"]):
                todo.append(clip)
            else:
                self.failures.append(failure_row(self.video.get("uri"), "annotate.caption",
                                                 ("NoKeyframes", "clip has no frames to show the model"),
                                                 self.video_id, clip["clip_id"], attempts=0))
        if self.config.differential_captions:
            runs, previous = [], None
            for clip in todo:
                runs.append(run := self._caption_clip(client, clip, previous))
                if run.final is not None:
                    previous = Previous(clip["start_s"], clip["end_s"], run.final.value.caption, clip["clip_id"])
        else:
            runs = self._caption_clips_at_once(client, todo)
        captioned = []
        for run in runs:
            self._track("annotate.caption", run.outcomes)
            if run.final is not None:
                captioned.append(ClipCaptioned(run.clip, run.final.value, run))
        return captioned

    def _caption_clip(self, client: LLMClient, clip: dict, previous: Previous | None) -> CaptionRun:
        """Differential mode: a clip's windows, each against the one before, then their merge
        when there are several. Stops at the first failed call."""
        frames = self.frames[clip["clip_id"]]
        parts = clip_parts(frames, self.config.max_frames)
        outcomes: list[Outcome] = []
        last = previous
        for part in parts:
            outcomes.append(outcome := client.call(caption_request(self.video, clip, part, last, self.config)))
            if not outcome.ok:
                break
            last = Previous(part.start_s, part.end_s, outcome.value.caption)
        if (merge := self._merge_request(clip, parts, outcomes)) is not None:
            outcomes.append(client.call(merge))
        return CaptionRun(clip, frames, len(parts), outcomes, previous)

    def _caption_clips_at_once(self, client: LLMClient, clips: list[dict]) -> list[CaptionRun]:
        """Every window of every clip in flight together, then the merges of clips with several."""
        parts = {c["clip_id"]: clip_parts(self.frames[c["clip_id"]], self.config.max_frames) for c in clips}
        windows = {c["clip_id"]: [client.submit(caption_request(self.video, c, part, None, self.config))
                                  for part in parts[c["clip_id"]]] for c in clips}
        outcomes = {cid: [f.result() for f in futures] for cid, futures in windows.items()}
        merges = {c["clip_id"]: client.submit(merge) for c in clips
                  if (merge := self._merge_request(c, parts[c["clip_id"]], outcomes[c["clip_id"]])) is not None}
        for cid, future in merges.items():
            outcomes[cid].append(future.result())
        return [CaptionRun(c, self.frames[c["clip_id"]], len(parts[c["clip_id"]]), outcomes[c["clip_id"]], None)
                for c in clips]

    def _merge_request(self, clip: dict, parts: list, outcomes: list[Outcome]):
        """The request merging a clip's window captions, when it has several and all succeeded."""
        if len(parts) > 1 and len(outcomes) == len(parts) and all(o.ok for o in outcomes):
            return merge_request(self.video, clip, [(part, o.value) for part, o in zip(parts, outcomes)], self.config)
        return None

    def caption_rows(self, captioned: Sequence[ClipCaptioned], summary: VideoSummary | None) -> None:
        """Caption rows, written once the summary's entities are known: each caption also in
        the canonical entity names."""
        entities = summary.entities if summary else []
        for item in captioned:
            run, clip = item.run, item.clip
            payload = {
                **item.value.model_dump(),
                "canonical_caption": canonical(item.value.caption, entities),
                "frame_times": [round(f.t, 3) for f in run.frames],
                "windows": run.windows,
                "previous_caption_of": run.previous.clip_id if run.previous else None,
            }
            self.annotations.append(annotation_record(
                ann_id=child_id(clip["clip_id"], "caption", 0), kind="caption", video_id=self.video_id,
                clip_id=clip["clip_id"], payload=payload, evidence_spans=[[clip["start_s"], clip["end_s"]]],
                result=run.final, usage=sum((o.usage for o in run.outcomes), Usage()),
            ))

    # ---- summary -----------------------------------------------------------------------------

    def summary(self, captioned: list[tuple[dict, ClipCaption]]) -> VideoSummary | None:
        client = self.clients["summary"]
        if client is None or not captioned:
            return None
        run = summarize_video(
            client, self.video, captioned,
            chunk_size=self.config.summary_chunk_size, prompt_versions=self.config.prompt_versions,
        )
        self._track("annotate.summary", run.outcomes)
        if run.final is None:
            return None
        self.totals.summary_incomplete += not run.complete
        cost = sum((o.usage for o in run.outcomes if o.ok), Usage())
        self.annotations.append(annotation_record(
            ann_id=child_id(self.video_id, "summary", 0), kind="summary", video_id=self.video_id,
            clip_id=None, payload=run.final.value.model_dump(), evidence_spans=run.covers,
            result=run.final, usage=cost,
            verdicts={"complete": run.complete, "chunks": run.chunks, "chunks_covered": run.covered_chunks},
        ))
        return run.final.value

    # ---- questions ---------------------------------------------------------------------------

    def questions(self, captioned: list[tuple[dict, ClipCaption]], summary: VideoSummary | None) -> None:
        client = self.clients["qa"]
        n = self.config.qa_per_video
        if client is None or not captioned or n == 0:
            return
        items = self._generate(client, captioned, summary, n)
        kept = self._unique_and_on_their_clips(items)
        cots, blinds, visuals = self._checks(captioned, summary, {i.ann_id: i.qa for i in kept})
        for item in kept:
            cot, blind, visual = cots.get(item.ann_id), blinds.get(item.ann_id), visuals.get(item.ann_id)
            verdicts = {**item.spans}
            verdicts["cot_matches_answer"] = verifiers.cot_matches_answer(cot.value, item.qa) if cot else None
            verdicts["blind_answerable"] = verifiers.answered_blind(blind.value, item.qa) if blind else None
            verdicts["visually_confirmed"] = verifiers.answered_visually(visual.value, item.qa) if visual else None
            verdicts["passed"] = verifiers.passed(verdicts)
            if self._dropped(item, verdicts):
                continue
            self.totals.qa_kept += 1
            if item.qa.options:
                self.totals.count_letter(item.qa.answer)
            self.annotations.append(annotation_record(
                ann_id=item.ann_id, kind="qa", video_id=self.video_id, clip_id=_single_clip(item.qa),
                payload=item.qa.model_dump(), evidence_spans=[[s.start_s, s.end_s] for s in item.qa.evidence],
                result=item.result, verdicts=verdicts, usage=item.usage,
            ))
            if cot is not None:
                self.annotations.append(annotation_record(
                    ann_id=child_id(item.ann_id, "cot", 0), kind="cot", video_id=self.video_id, clip_id=None,
                    payload={"qa_ann_id": item.ann_id, **cot.value.model_dump()}, evidence_spans=cot.value.spans(),
                    result=cot, verdicts={"matches_answer": verdicts["cot_matches_answer"]},
                ))

    def _generate(self, client: LLMClient, captioned, summary, n: int) -> list[_Item]:
        """QA over windows of clips spread across the video; options shuffled per item. A reply
        with fewer items than asked is a `annotate.verify.count` row; ids stay positional."""
        windows = qa_windows(captioned, self.config.context_clips, n)
        requests = [qa_request(self.video, w, summary, k, self.frames, self.config, i) for i, (w, k) in enumerate(windows)]
        outcomes = client.map(requests)
        self._track("annotate.qa", outcomes)
        items, position = [], 0
        for (_, asked), outcome in zip(windows, outcomes):
            self.totals.qa_asked += asked
            got = outcome.value.items[:asked] if outcome.ok else []  # a model may write more than asked
            if outcome.ok and len(got) < asked:
                self.totals.qa_fewer_than_asked += asked - len(got)
                self.failures.append(verifiers.drop_row(self.video, "count", outcome.item_id,
                                                        f"asked for {asked} questions, got {len(got)}", {}))
            shares = split_usage(outcome.usage, len(got)) if got else []
            for offset, qa in enumerate(got):
                ann_id = child_id(self.video_id, "qa", position + offset)
                items.append(_Item(ann_id, shuffle_options(qa, ann_id), outcome, shares[offset]))
            position += asked
        return items

    def _unique_and_on_their_clips(self, items: list[_Item]) -> list[_Item]:
        """Repeated questions dropped; span verdicts set, and items failing them dropped
        (`llm.drop_failed_spans`) before any further call is spent on them."""
        kept_positions, repeated = verifiers.unique_questions([i.qa for i in items])
        for p in repeated:
            self._drop(items[p], "duplicate", "repeats an earlier question")
        kept = []
        for item in (items[p] for p in kept_positions):
            item.spans.update(verifiers.check_spans(item.qa, self.duration_s, self.clips_by_id))
            if self.config.drop_failed_spans and not (item.spans["spans_in_video"] and item.spans["spans_on_cited_clips"]):
                self._drop(item, "spans", "an evidence span lies outside the video or outside the clip it cites")
                continue
            kept.append(item)
        return kept

    def _checks(self, captioned, summary, items: dict[str, QAItem]) -> tuple[dict, dict, dict]:
        """CoT traces, blind answers and visual answers for every kept item, the families in parallel."""
        cfg = self.config
        families = {
            "cot": [cot_request(self.video, captioned, summary, qa, i, self.frames, cfg) for i, qa in items.items()],
            "blind": [verifiers.blind_request(qa, i, cfg.prompt_versions.get("blind")) for i, qa in items.items()],
            "visual": [r for i, qa in items.items() if (r := verifiers.visual_request(qa, i, self.frames, cfg,
                                                                                                self.clips_by_id))]
            if cfg.verify.visual else [],
        }
        futures = {name: [self.clients[name].submit(r) for r in requests]
                   for name, requests in families.items() if self.clients[name] is not None and requests}
        outcomes = {name: [f.result() for f in pending] for name, pending in futures.items()}
        return tuple({o.item_id: o for o in self._track(f"annotate.{name}", outcomes.get(name, []))}
                     for name in families)

    def _dropped(self, item: _Item, verdicts: dict[str, Any]) -> bool:
        if self.config.drop_blind_answerable and verdicts["blind_answerable"]:
            self._drop(item, "blind", "answered right by the blind check, without the video")
            return True
        if self.config.verify.visual and verdicts["visually_confirmed"] is False:
            self._drop(item, "visual", "answered wrong from the frames of its evidence spans alone")
            return True
        return False

    def _drop(self, item: _Item, check: str, reason: str) -> None:
        setattr(self.totals, f"qa_dropped_{check}", getattr(self.totals, f"qa_dropped_{check}") + 1)
        self.failures.append(verifiers.drop_row(self.video, check, item.ann_id, reason, item.qa.model_dump()))

    def _track(self, stage: str, outcomes: list[Outcome]) -> list:
        """Count every outcome, turn failures into rows, and return the successes."""
        ok = []
        for outcome in outcomes:
            self.totals.add(outcome)
            if outcome.ok:
                ok.append(outcome)
            else:
                self.failures.append(failure_row(self.video.get("uri"), stage, (outcome.error_class, outcome.message),
                                                 self.video["video_id"], outcome.item_id, outcome.attempts))
        return ok


@dataclass
class _Item:
    """A generated QA item on its way through the checks."""

    ann_id: str
    qa: QAItem
    result: LLMResult
    usage: Usage
    spans: dict[str, Any] = field(default_factory=dict)


def _single_clip(qa: QAItem) -> str | None:
    cited = {s.clip_id for s in qa.evidence}
    return cited.pop() if len(cited) == 1 else None
