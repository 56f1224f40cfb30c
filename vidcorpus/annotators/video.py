"""Annotate one video end to end: captions -> summary -> QA -> CoT and blind check -> verdicts.

`VideoAnnotator.annotate(video, clips, keyframe_jpegs)` returns (annotations, failures, usage)
and never raises for an endpoint's or a model's misbehaviour, so the pipeline can call it in
one Beam DoFn per video: every call that fails becomes a failure row, every stage uses what
the stages before it managed to produce, and every QA item carries the verdicts of its checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vidcorpus.annotators import verifiers
from vidcorpus.annotators.captions import ClipCaption, caption_requests
from vidcorpus.annotators.client import LLMClient, Outcome, Usage
from vidcorpus.annotators.cot import cot_request
from vidcorpus.annotators.engine import engine_for
from vidcorpus.annotators.qa import QAItem, qa_request
from vidcorpus.annotators.records import (
    UsageTotals,
    annotation_record,
    split_usage,
)
from vidcorpus.annotators.summaries import VideoSummary, summarize_video
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
        for client in self.clients.values():
            if client is not None:
                client.close()

    def annotate(
        self, video: dict, clips: Sequence[dict], keyframe_jpegs: Mapping[str, Sequence[bytes]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
        """(annotation rows, failure rows, usage totals) for one video."""
        run = _VideoRun(self.config, self.clients, video, clips)
        captioned = run.captions(keyframe_jpegs)
        summary = run.summary(captioned)
        run.questions(captioned, summary)
        return run.annotations, run.failures, run.totals.as_dict()


def annotate_video(
    video: dict, clips: Sequence[dict], keyframe_jpegs: Mapping[str, Sequence[bytes]], annotator: VideoAnnotator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    return annotator.annotate(video, clips, keyframe_jpegs)


class _VideoRun:
    """The accumulators of one `annotate` call: rows so far, failures so far, usage so far."""

    def __init__(self, config: AnnotatorConfig, clients: Mapping[str, LLMClient | None], video: dict, clips: Sequence[dict]):
        self.config = config
        self.clients = clients
        self.video = video
        self.video_id = video["video_id"]
        self.clips_by_id = {c["clip_id"]: c for c in clips}
        self.clips = sorted(clips, key=lambda c: c["index"])
        self.duration_s = video.get("duration_s") or max((c["end_s"] for c in clips), default=0.0)
        self.annotations: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.totals = UsageTotals()

    def captions(self, keyframe_jpegs: Mapping[str, Sequence[bytes]]) -> Captioned:
        client = self.clients["caption"]
        if client is None:
            return []
        cfg = self.config
        requests, without_images = caption_requests(
            self.video, self.clips, dict(keyframe_jpegs),
            differential=cfg.differential_captions, detail=cfg.image_detail,
            max_keyframes=cfg.max_keyframes_per_clip, prompt_versions=cfg.prompt_versions,
        )
        for clip in without_images:
            self.failures.append(failure_row(self.video.get("uri"), "annotate.caption",
                                             ("NoKeyframes", "clip has no keyframe images"),
                                             self.video["video_id"], clip["clip_id"], attempts=0))
        captioned: Captioned = []
        for outcome in self._track("annotate.caption", client.map(requests)):
            clip = self.clips_by_id[outcome.item_id]
            captioned.append((clip, outcome.value))
            self.annotations.append(annotation_record(
                ann_id=child_id(clip["clip_id"], "caption", 0), kind="caption",
                video_id=self.video_id, clip_id=clip["clip_id"], payload=outcome.value.model_dump(),
                evidence_spans=[[clip["start_s"], clip["end_s"]]], result=outcome,
            ))
        return captioned

    def summary(self, captioned: Captioned) -> VideoSummary | None:
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
        cost = sum((o.usage for o in run.outcomes if o.ok), Usage())
        self.annotations.append(annotation_record(
            ann_id=child_id(self.video_id, "summary", 0), kind="summary", video_id=self.video_id,
            clip_id=None, payload=run.final.value.model_dump(), evidence_spans=[[0.0, self.duration_s]],
            result=run.final, usage=cost,
        ))
        return run.final.value

    def questions(self, captioned: Captioned, summary: VideoSummary | None) -> None:
        client = self.clients["qa"]
        n = self.config.qa_per_video
        if client is None or not captioned or n == 0:
            return
        version = self.config.prompt_versions.get("qa")
        generated = self._track("annotate.qa", [client.call(qa_request(self.video, captioned, summary, n, version))])
        if not generated:
            return
        qa_set = generated[0]
        items = qa_set.value.items[:n]  # a model may write more than asked; ids stay positional
        kept, repeated = verifiers.unique_questions(items)
        self.totals.qa_dropped_duplicate += len(repeated)
        ids = {p: child_id(self.video_id, "qa", p) for p in kept}
        cots, blinds = self._checks(captioned, {ids[p]: items[p] for p in kept})
        shares = split_usage(qa_set.usage, len(items)) if items else []
        for p in kept:
            qa, qa_id = items[p], ids[p]
            verdicts: dict[str, Any] = verifiers.check_spans(qa, self.duration_s, self.clips_by_id)
            cot = cots.get(qa_id)
            blind = blinds.get(qa_id)
            verdicts["cot_matches_answer"] = verifiers.cot_matches_answer(cot.value, qa) if cot else None
            verdicts["blind_answerable"] = verifiers.answered_blind(blind.value, qa) if blind else None
            verdicts["passed"] = verifiers.passed(verdicts)
            if self._dropped(verdicts):
                continue
            self.annotations.append(annotation_record(
                ann_id=qa_id, kind="qa", video_id=self.video_id, clip_id=_single_clip(qa),
                payload=qa.model_dump(), evidence_spans=[[s.start_s, s.end_s] for s in qa.evidence],
                result=qa_set, verdicts=verdicts, usage=shares[p],
            ))
            if cot is not None:
                self.annotations.append(annotation_record(
                    ann_id=child_id(qa_id, "cot", 0), kind="cot", video_id=self.video_id, clip_id=None,
                    payload={"qa_ann_id": qa_id, **cot.value.model_dump()}, evidence_spans=cot.value.spans(),
                    result=cot, verdicts={"matches_answer": verdicts["cot_matches_answer"]},
                ))

    def _checks(self, captioned: Captioned, items: dict[str, QAItem]) -> tuple[dict, dict]:
        """CoT traces and blind answers for every kept item, the two families in parallel."""
        versions = self.config.prompt_versions
        cot_client, blind_client = self.clients["cot"], self.clients["blind"]
        cot_requests = [cot_request(self.video, captioned, qa, i, versions.get("cot")) for i, qa in items.items()]
        blind_requests = [verifiers.blind_request(qa, i, versions.get("blind")) for i, qa in items.items()]
        with ThreadPoolExecutor(max_workers=2) as pool:
            cots = pool.submit(cot_client.map, cot_requests) if cot_client else None
            blinds = pool.submit(blind_client.map, blind_requests) if blind_client else None
            cot_outcomes = cots.result() if cots else []
            blind_outcomes = blinds.result() if blinds else []
        return (
            {o.item_id: o for o in self._track("annotate.cot", cot_outcomes)},
            {o.item_id: o for o in self._track("annotate.blind", blind_outcomes)},
        )

    def _dropped(self, verdicts: dict[str, Any]) -> bool:
        if self.config.drop_blind_answerable and verdicts["blind_answerable"]:
            self.totals.qa_dropped_blind += 1
            return True
        if self.config.drop_failed_spans and not (verdicts["spans_in_video"] and verdicts["spans_on_cited_clips"]):
            self.totals.qa_dropped_spans += 1
            return True
        return False

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


def _single_clip(qa: QAItem) -> str | None:
    cited = {s.clip_id for s in qa.evidence}
    return cited.pop() if len(cited) == 1 else None
