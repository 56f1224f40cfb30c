"""Temporal grounding from annotations: "when does <event> happen?" answered by a span.

Two sources, both read from annotation records of one video:

- kind "caption", attached to a clip (``clip_id``), payload ``{"caption": ...}``: the event
  is the caption, its span is the clip;
- kind "qa" with evidence spans (``evidence`` / ``evidence_spans`` on the record or in its
  payload, as ``{"start_s", "end_s"}`` or ``[start, end]`` in source seconds): the question
  asks where the evidence for the QA question is shown. QA that failed verification is
  skipped.

The model is shown a window of the source video (a contiguous run of clips, `window_s` long,
at a seeded offset) and the ground truth is the event's span in window time. Events that are
ambiguous inside their window (another clip with the same caption or the same `dup_group`)
or that fill most of it are skipped.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping, Sequence

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.ids import child_id
from vidcorpus.tasks.records import MediaRef, Task, format_span, round_time, seeded_rng
from vidcorpus.tasks.rewards import normalize_text
from vidcorpus.tasks.windows import clips_overlapping, contiguous_runs, window_covering

Clip = dict[str, Any]
Annotation = Mapping[str, Any]

CAPTION_QUESTION = 'When does this happen in the video: "{event}"?'
QA_QUESTION = 'Which part of the video shows the answer to this question: "{question}"?'
SPAN_FORMAT = "Answer with the start and end time in seconds, as start-end."
SPANS_FORMAT = "Answer with start-end spans in seconds, separated by commas if there are several."
MAX_EVENT_SHARE = 0.8  # an event filling more of the window than this is not a grounding question


def annotation_payload(annotation: Annotation) -> dict[str, Any]:
    """The payload as a dict, whether stored as JSON text or as a mapping."""
    payload = annotation.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError:
            return {}
    return dict(payload) if isinstance(payload, Mapping) else {}


def _as_span(item: Any) -> tuple[float, float] | None:
    if isinstance(item, Mapping):
        start, end = item.get("start_s", item.get("start")), item.get("end_s", item.get("end"))
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        start, end = item
    else:
        return None
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        return None
    return (start, end) if end > start >= 0 else None


def evidence_spans(annotation: Annotation) -> list[tuple[float, float]]:
    """Evidence spans (source seconds) from the record or its payload; invalid items dropped."""
    payload = annotation_payload(annotation)
    for holder in (annotation, payload):
        for field in ("evidence_spans", "evidence"):
            items = holder.get(field)
            if isinstance(items, str):
                try:
                    items = json.loads(items)
                except json.JSONDecodeError:
                    items = None
            if isinstance(items, Mapping):
                items = [items]
            if isinstance(items, (list, tuple)) and items:
                spans = [s for s in map(_as_span, items) if s is not None]
                if spans:
                    return sorted(spans)
    return []


def verification_passed(annotation: Annotation) -> bool:
    """False only when the annotation records a failed check (`verdicts`, `verified` or `verification`)."""
    for field in ("verdicts", "verified", "verification"):
        value = annotation.get(field)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                continue
        if isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            for key in ("passed", "ok", "valid"):
                if isinstance(value.get(key), bool):
                    return value[key]
    return True


def captions_by_clip(annotations: Iterable[Annotation]) -> dict[str, str]:
    """clip_id -> caption text from caption annotations (first by ann_id when several)."""
    captions: dict[str, str] = {}
    ordered = sorted(
        (a for a in annotations if a.get("kind") == "caption" and a.get("clip_id")),
        key=lambda a: str(a.get("ann_id", "")),
    )
    for annotation in ordered:
        caption = annotation_payload(annotation).get("caption")
        if isinstance(caption, str) and caption.strip() and annotation["clip_id"] not in captions:
            captions[annotation["clip_id"]] = caption.strip()
    return captions


def _run_of(runs: Sequence[Sequence[Clip]], start_s: float, end_s: float) -> Sequence[Clip] | None:
    for run in runs:
        if float(run[0]["start_s"]) - 1e-6 <= start_s and end_s <= float(run[-1]["end_s"]) + 1e-6:
            return run
    return None


def _window_ref(video: Mapping[str, Any], start_s: float, end_s: float) -> MediaRef:
    return MediaRef(kind="window", video_id=video["video_id"], uri=video["uri"],
                    duration_s=end_s - start_s, start_s=start_s, end_s=end_s)


def _caption_is_ambiguous(clip: Clip, window_clips: Sequence[Clip], captions: Mapping[str, str]) -> bool:
    text = normalize_text(captions[clip["clip_id"]])
    for other in window_clips:
        if other["clip_id"] == clip["clip_id"]:
            continue
        if other.get("dup_group") is not None and other.get("dup_group") == clip.get("dup_group"):
            return True
        if other["clip_id"] in captions and normalize_text(captions[other["clip_id"]]) == text:
            return True
    return False


def _grounding_task(task_id: str, kind: str, video: Mapping[str, Any], split: str, window: tuple[float, float],
                    events: Sequence[tuple[float, float]], question: str, answer_format: str,
                    source_ids: list[str], meta: dict[str, Any]) -> Task | None:
    start, end = window
    shifted = [(max(0.0, s - start), min(end - start, e - start)) for s, e in events]
    covered = sum(e - s for s, e in shifted)
    if covered > MAX_EVENT_SHARE * (end - start):
        return None
    truth = {"spans": [[round_time(s), round_time(e)] for s, e in shifted], "duration_s": round_time(end - start)}
    return Task(
        task_id=task_id, family="grounding", kind=kind, video_id=video["video_id"],
        video_ids=[video["video_id"]], split=split, source_ids=source_ids,
        media=[_window_ref(video, start, end)], question=question, answer_format=answer_format,
        ground_truth=truth, answer=", ".join(format_span(s, e) for s, e in shifted),
        reward_rule="temporal_iou", difficulty=round(min(1.0, max(0.0, 1.0 - covered / (end - start))), 4),
        meta={**meta, "window_source": [start, end], "event_source": [list(s) for s in events]},
    )


def grounding_task_id(video_id: str, parent: str) -> str:
    """The video's id and a hash of the annotation asked about: the clip index a caption's id
    carries would tell roughly when the event happens."""
    return f"{video_id}_ground_{hashlib.sha256(parent.encode()).hexdigest()[:10]}"


def plan_grounding_tasks(
    video: Mapping[str, Any], clips: Sequence[Clip], annotations: Sequence[Annotation], config: TasksConfig
) -> list[Task]:
    """Up to `per_video` grounding tasks for one video from its caption and QA annotations."""
    settings = config.grounding
    if not (config.enabled and settings.enabled) or not clips:
        return []
    video_id = video["video_id"]
    split = video["split"]
    runs = contiguous_runs(clips)
    captions = captions_by_clip(annotations)
    clip_by_id = {c["clip_id"]: c for c in clips}
    caption_anns = {a["clip_id"]: a for a in sorted(
        (a for a in annotations if a.get("kind") == "caption" and a.get("clip_id") in captions),
        key=lambda a: str(a.get("ann_id", "")), reverse=True)}

    candidates: list[tuple[str, Any]] = []
    if settings.from_captions:
        candidates += [("caption", clip_by_id[c]) for c in sorted(captions) if c in clip_by_id
                       and float(clip_by_id[c]["end_s"]) - float(clip_by_id[c]["start_s"]) >= settings.min_event_s]
    if settings.from_qa:
        qa = [a for a in annotations if a.get("kind") == "qa" and verification_passed(a) and evidence_spans(a)
              and annotation_payload(a).get("question")]
        candidates += [("qa", (index, a)) for index, a in enumerate(sorted(qa, key=lambda a: str(a.get("ann_id", ""))))]

    rng = seeded_rng(config.seed, video_id, "grounding")
    tasks: list[Task] = []
    for source, item in rng.sample(candidates, len(candidates)):
        if len(tasks) >= settings.per_video:
            break
        if source == "caption":
            clip = item
            parent = str(caption_anns[clip["clip_id"]].get("ann_id") or clip["clip_id"])
            events = [(float(clip["start_s"]), float(clip["end_s"]))]
        else:
            index, item = item
            parent = str(item.get("ann_id") or child_id(video_id, "qa", index))
            events = evidence_spans(item)
        extent = (min(s for s, _ in events), max(e for _, e in events))
        run = _run_of(runs, *extent)
        if run is None:
            continue
        window = window_covering(run, *extent, settings.window_s, seeded_rng(config.seed, parent, "grounding-window"))
        if window is None:
            continue
        if source == "caption":
            if _caption_is_ambiguous(clip, clips_overlapping(run, *window), captions):
                continue
            task = _grounding_task(
                grounding_task_id(video_id, parent), "grounding_caption", video, split, window, events,
                CAPTION_QUESTION.format(event=captions[clip["clip_id"]].rstrip(".")), SPAN_FORMAT,
                [parent, clip["clip_id"]], {"source": "caption", "clip_id": clip["clip_id"]})
        else:
            question = str(annotation_payload(item)["question"]).strip()
            task = _grounding_task(
                grounding_task_id(video_id, parent), "grounding_qa", video, split, window, events,
                QA_QUESTION.format(question=question), SPANS_FORMAT if len(events) > 1 else SPAN_FORMAT,
                [parent], {"source": "qa", "answer": annotation_payload(item).get("answer")})
        if task is not None:
            tasks.append(task)
    return sorted(tasks, key=lambda t: t.task_id)
