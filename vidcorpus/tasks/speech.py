"""Speech tasks from the `transcripts` table, answers known by construction (no LLM):

- "when is this line said?": a quoted line of the video's primary transcript track, answered by
  its span in window time (reward: temporal IoU);
- "what is said between t1 and t2?": a line's span, answered by its words (reward: `exact`, a
  match after `rewards.normalize_text`), with other lines of the video offered as distractors.

The model is shown a window of the source video (with its sound) around the line, as grounding
tasks are. Lines said more than once in the video (after normalisation), shorter than
`min_line_s` or with fewer than `min_words` words are not asked about.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.media.transcripts import primary_lines
from vidcorpus.tasks.records import MediaRef, Task, format_seconds, format_span, round_time, seeded_rng
from vidcorpus.tasks.rewards import normalize_text
from vidcorpus.tasks.windows import contiguous_runs, window_covering

WHEN_QUESTION = 'When is this said in the video: "{text}"?'
WHAT_QUESTION = "What is said between {start} and {end} seconds? These lines are said in the video:\n{options}"
SPAN_FORMAT = "Answer with the start and end time in seconds, as start-end."
TEXT_FORMAT = "Answer with the words said, exactly as one of the lines above."


def plan_speech_tasks(video: Mapping[str, Any], clips: Sequence[Mapping[str, Any]],
                      transcripts: Sequence[Mapping[str, Any]], config: TasksConfig) -> list[Task]:
    """Up to `tasks.speech.per_video` tasks of each kind for one video."""
    settings = config.speech
    if not (config.enabled and settings.enabled) or not clips:
        return []
    streams = video.get("audio_streams") or []
    lines = primary_lines(transcripts, streams[0]["language"] if streams else None)
    said = Counter(normalize_text(line["text"]) for line in lines)
    usable = [line for line in lines if said[normalize_text(line["text"])] == 1
              and line["end_s"] - line["start_s"] >= settings.min_line_s
              and len(line["text"].split()) >= settings.min_words]
    runs = contiguous_runs(list(clips))
    tasks: list[Task] = []
    for kind in ("speech_when", "speech_what"):
        rng = seeded_rng(config.seed, video["video_id"], kind)
        made = 0
        for line in rng.sample(usable, len(usable)):
            if made >= settings.per_video:
                break
            task = _task(kind, video, line, lines, runs, config)
            if task is not None:
                tasks.append(task)
                made += 1
    return sorted(tasks, key=lambda t: t.task_id)


def _task(kind: str, video: Mapping[str, Any], line: Mapping[str, Any], lines: Sequence[Mapping[str, Any]],
          runs: Sequence[Sequence[Mapping[str, Any]]], config: TasksConfig) -> Task | None:
    start, end = float(line["start_s"]), float(line["end_s"])
    run = next((r for r in runs if r[0]["start_s"] - 1e-6 <= start and end <= r[-1]["end_s"] + 1e-6), None)
    if run is None:
        return None
    key = f"{line['source']}:{line.get('language')}:{start:.3f}:{line['text']}"
    window = window_covering(run, start, end, config.speech.window_s, seeded_rng(config.seed, key, "speech-window"))
    if window is None:
        return None
    w0, w1 = window
    span = (round_time(start - w0), round_time(end - w0))
    common = {
        "task_id": f"{video['video_id']}_{kind}_{hashlib.sha256(key.encode()).hexdigest()[:10]}",
        "family": "speech", "kind": kind, "video_id": video["video_id"], "video_ids": [video["video_id"]],
        "split": video["split"], "source_ids": [video["video_id"]],
        "media": [MediaRef(kind="window", video_id=video["video_id"], uri=video["uri"], duration_s=w1 - w0,
                           start_s=w0, end_s=w1)],
        "meta": {"source": line["source"], "language": line.get("language"), "line_source": [start, end],
                 "window_source": [w0, w1]},
    }
    if kind == "speech_when":
        return Task(**common, question=WHEN_QUESTION.format(text=line["text"]), answer_format=SPAN_FORMAT,
                    ground_truth={"spans": [list(span)], "duration_s": round_time(w1 - w0)},
                    answer=format_span(*span), reward_rule="temporal_iou",
                    difficulty=round(min(1.0, max(0.0, 1.0 - (span[1] - span[0]) / (w1 - w0))), 4))
    options = _options(line, lines, config, key)
    question = WHAT_QUESTION.format(start=format_seconds(span[0]), end=format_seconds(span[1]),
                                    options="\n".join(f"- {o}" for o in options))
    return Task(**common, question=question, answer_format=TEXT_FORMAT, options=options,
                ground_truth=line["text"], answer=line["text"], reward_rule="exact",
                difficulty=round(1 - 1 / len(options), 4))


def _options(line: Mapping[str, Any], lines: Sequence[Mapping[str, Any]], config: TasksConfig, key: str) -> list[str]:
    """The line's words and up to `distractors` other lines of the video, in a seeded order."""
    rng = seeded_rng(config.seed, key, "speech-options")
    truth = normalize_text(line["text"])
    others = sorted({other["text"] for other in lines if normalize_text(other["text"]) != truth})
    options = [line["text"], *rng.sample(others, min(config.speech.distractors, len(others)))]
    rng.shuffle(options)
    return options
