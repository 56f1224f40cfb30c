"""Tasks as training rows: SFT conversations and RL samples (see `schemas` for the columns).

SFT rows carry the same conversation twice:

- ``messages``, OpenAI/HF chat style: ``{"role", "content": [parts]}`` where a part is
  ``{"type": "text", "text"}``, ``{"type": "video", "media_index"}`` or, when media are shown
  as frames, ``{"type": "image", "media_index", "timestamp_s"}`` preceded by a ``[12.5s]``
  text part;
- ``conversations``, LLaVA style: ``{"from": "human"|"gpt", "value"}`` with one ``<video>``
  token per video (or one ``<image>`` token per frame, listed in ``frames``).

RL rows hold the prompt (plain text and as messages without the answer), the media, the
JSON ground truth and reward rule that `vidcorpus.tasks.rewards.score` takes, the reference
answer, and a difficulty in [0, 1].

Nothing a trainer forwards to a model derives the answer: a row's `media` entries name their
media by an opaque `media_id` (a hash, which does not sort by time) with a uri, a duration and
a label. Whatever the answer could be read from (source times of windows, probe edit lists
with their overlay text, clip and source ids, needle records) sits in the `answer_key` JSON
column, which loaders use to assemble media in reference mode and never forward.

A task goes to the `sft` table or to the `rl` table, never both, unless `tasks.rl_overlap`:
`tasks.rl_share` of the tasks (by a hash of their media, so the questions about one probe stay
together) are for RL.

Prompts state each single video's length, since every time asked about is in seconds from
the start of what the model is shown.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable

from vidcorpus.config.tasks import ExportConfig, TasksConfig
from vidcorpus.ids import unit_hash
from vidcorpus.tasks.records import MediaRef, Task, format_seconds

TASKS_VERSION = "tasks/v1"


def media_id(task: Task, index: int) -> str:
    """An opaque name for a task's `index`-th media: a hash that keeps no time order."""
    return "m" + hashlib.sha256(f"{task.task_id}/{index}".encode()).hexdigest()[:12]


def media_row(ref: MediaRef, identifier: str, label: str | None = None) -> dict[str, Any]:
    """One entry of a row's `media` list: what a model may be told about the media."""
    return {"kind": ref.kind, "media_id": identifier, "video_id": ref.video_id, "uri": ref.uri,
            "duration_s": ref.duration_s, "label": label}


def media_key(ref: MediaRef, identifier: str) -> dict[str, Any]:
    """How to assemble one media (source window, clip, probe edit list): answer-key material."""
    return {"media_id": identifier, "start_s": ref.start_s, "end_s": ref.end_s, "clip_id": ref.clip_id,
            "probe_id": ref.probe_id, "edit_list": ref.edit_list.model_dump(mode="json") if ref.edit_list else None}


def answer_key(task: Task) -> str:
    """JSON of everything about a task a model must not see: media recipes, source ids, meta."""
    media = [media_key(ref, media_id(task, i)) for i, ref in enumerate(task.media)]
    return json.dumps({"media": media, "source_ids": list(task.source_ids), "meta": task.meta},
                      sort_keys=True, ensure_ascii=False)


def frame_count(duration_s: float, config: ExportConfig) -> int:
    """Frames shown of one video: at least `frames_per_video`, and dense enough that no two are
    more than `max_frame_interval_s` apart (so a short needle or event is never skipped)."""
    count = config.frames_per_video
    if config.max_frame_interval_s:
        count = max(count, math.ceil(duration_s / config.max_frame_interval_s - 1e-9))
    return count


def frame_times(duration_s: float, count: int) -> list[float]:
    """`count` frame times at the centres of equal slices of the media: any stretch longer than
    one slice contains one."""
    return [(i + 0.5) * duration_s / count for i in range(count)]


def _part(kind: str, text: str | None = None, media_index: int | None = None,
          timestamp_s: float | None = None) -> dict[str, Any]:
    return {"type": kind, "text": text, "media_index": media_index, "timestamp_s": timestamp_s}


def prompt_text(task: Task) -> str:
    """The user's words: the video length (single video), the question and the answer format."""
    lines = []
    if len(task.media) == 1:
        lines.append(f"The video is {format_seconds(task.media[0].duration_s)} seconds long.")
    lines += [task.question, task.answer_format]
    return "\n".join(lines)


def _labels(task: Task) -> list[str | None]:
    return list(task.media_labels) if task.media_labels else [None] * len(task.media)


def user_turn(task: Task, config: ExportConfig) -> tuple[list[dict], str, list[dict]]:
    """(chat content parts, LLaVA human text, frame refs) for the user's turn."""
    parts: list[dict] = []
    llava: list[str] = []
    frames: list[dict] = []
    for index, (ref, label) in enumerate(zip(task.media, _labels(task))):
        if config.media_as == "video":
            if label:
                parts.append(_part("text", f"{label}:"))
            parts.append(_part("video", media_index=index))
            llava.append(f"{label}: <video>" if label else "<video>")
            continue
        if label:
            parts.append(_part("text", f"{label}:"))
            llava.append(f"{label}:")
        for time in frame_times(ref.duration_s, frame_count(ref.duration_s, config)):
            stamp = f"[{format_seconds(time)}s]"
            parts += [_part("text", stamp), _part("image", media_index=index, timestamp_s=time)]
            llava.append(f"{stamp} <image>")
            frames.append({"media_index": index, "timestamp_s": time})
    text = prompt_text(task)
    parts.append(_part("text", text))
    llava.append(text)
    return parts, "\n".join(llava), frames


def _identity(task: Task, sample_id: str) -> dict[str, Any]:
    return {
        "sample_id": sample_id, "task_id": task.task_id, "family": task.family, "kind": task.kind,
        "video_id": task.video_id, "video_ids": list(task.video_ids), "split": task.split,
        "media": [media_row(ref, media_id(task, i), label) for i, (ref, label) in enumerate(zip(task.media, _labels(task)))],
        "answer_key": answer_key(task),
    }


def _system(config: ExportConfig) -> list[dict]:
    return [{"role": "system", "content": [_part("text", config.system_prompt)]}] if config.system_prompt else []


def to_sft_row(task: Task, config: ExportConfig | None = None) -> dict[str, Any]:
    """A row of the `sft` table: the task as a finished conversation."""
    config = config or ExportConfig()
    parts, human, frames = user_turn(task, config)
    messages = _system(config) + [
        {"role": "user", "content": parts},
        {"role": "assistant", "content": [_part("text", task.answer)]},
    ]
    conversations = ([{"from": "system", "value": config.system_prompt}] if config.system_prompt else []) + [
        {"from": "human", "value": human},
        {"from": "gpt", "value": task.answer},
    ]
    return {**_identity(task, f"{task.task_id}_sft"), "media_as": config.media_as, "messages": messages,
            "conversations": conversations, "frames": frames}


def to_rl_row(task: Task, config: ExportConfig | None = None) -> dict[str, Any]:
    """A row of the `rl` table: prompt, media, ground truth and the rule that scores answers."""
    config = config or ExportConfig()
    parts, _, _ = user_turn(task, config)
    return {
        **_identity(task, f"{task.task_id}_rl"),
        "prompt": prompt_text(task),
        "prompt_messages": _system(config) + [{"role": "user", "content": parts}],
        "answer": task.answer,
        "ground_truth": json.dumps(task.ground_truth, sort_keys=True),
        "reward_rule": task.reward_rule,
        "options": list(task.options),
        "difficulty": float(task.difficulty),
    }


def media_unit(task: Task) -> str:
    """What decides a task's table: its probe (all questions about one probe together), else itself."""
    probes = [ref.probe_id for ref in task.media if ref.probe_id]
    return probes[0] if probes else task.task_id


def is_rl_task(task: Task, config: TasksConfig) -> bool:
    """Whether a task belongs to the RL share (a fixed coin per media unit and seed)."""
    return unit_hash(media_unit(task), f"rl-share/{config.seed}") < config.rl_share


def export_rows(tasks: Iterable[Task], config: ExportConfig | TasksConfig | None = None) -> tuple[list[dict], list[dict]]:
    """(sft rows, rl rows) for `tasks`, sorted by sample_id. With the tasks config, each task goes
    to one table (`rl_share`), or to both when `rl_overlap`; with only an export config, to both."""
    tasks = sorted(tasks, key=lambda t: t.task_id)
    if isinstance(config, TasksConfig):
        if config.rl_overlap:
            return export_rows(tasks, config.export)
        rl = [t for t in tasks if is_rl_task(t, config)]
        sft = [t for t in tasks if not is_rl_task(t, config)]
        return [to_sft_row(t, config.export) for t in sft], [to_rl_row(t, config.export) for t in rl]
    return [to_sft_row(t, config) for t in tasks], [to_rl_row(t, config) for t in tasks]


def _evidence_spans(task: Task) -> list[list[float]]:
    """Source-time spans a task is about: the event, the clips ordered, or the probe's haystack."""
    if "event_source" in task.meta:
        return [list(map(float, span)) for span in task.meta["event_source"]]
    if "source_spans" in task.meta:
        return [list(map(float, span)) for span in task.meta["source_spans"]]
    if "haystack_source" in task.meta:
        return [list(map(float, task.meta["haystack_source"]))]
    return []


def task_annotation(task: Task) -> dict[str, Any]:
    """The task as a row of the annotations table (kind niah | order | grounding), made by code.

    Same columns as model-made annotations; provenance says `model="code"`, no tokens, no
    cache, and a verdict of passed by construction.
    """
    payload = json.dumps({
        "task_kind": task.kind, "question": task.question, "answer": task.answer, "options": task.options,
        "ground_truth": task.ground_truth, "reward_rule": task.reward_rule, "difficulty": task.difficulty,
        "source_ids": task.source_ids, "meta": task.meta,
    }, sort_keys=True, ensure_ascii=False)
    return {
        "ann_id": task.task_id,
        "kind": task.family,
        "video_id": task.video_id,
        "clip_id": task.meta.get("clip_id"),
        "payload": payload,
        "evidence_spans": _evidence_spans(task),
        "model": "code",
        "prompt_id": task.kind,
        "prompt_version": TASKS_VERSION,
        "request_hash": hashlib.sha256(payload.encode()).hexdigest()[:16],
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
        "verdicts": json.dumps({"by_construction": True, "passed": True}, sort_keys=True),
    }
