"""Speech tasks: answers right by construction, scored by the reward rules a trainer imports."""

import json

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.tasks.build import plan_video_tasks
from vidcorpus.tasks.export import export_rows
from vidcorpus.tasks.rewards import score

VIDEO = {"video_id": "vid", "uri": "talk.mp4", "split": "train", "duration_s": 300.0, "audio_streams": []}
CLIPS = [{"clip_id": f"vid_{i:04d}", "video_id": "vid", "index": i, "start_s": 30.0 * i, "end_s": 30.0 * (i + 1)}
         for i in range(10)]
TEXTS = ["the kettle is boiling now", "please pass the salt", "we leave at nine tonight", "ok",
         "the kettle is boiling now", "turn left at the old mill"]
TRANSCRIPTS = [{"video_id": "vid", "source": "embedded", "language": "eng", "start_s": 20.0 + 40 * i,
                "end_s": 23.5 + 40 * i, "text": text} for i, text in enumerate(TEXTS)]


SPEECH_ONLY = TasksConfig(niah={"enabled": False}, ordering={"enabled": False}, grounding={"enabled": False})


def planned(config=SPEECH_ONLY):
    return plan_video_tasks(VIDEO, CLIPS, [], config, transcripts=TRANSCRIPTS).tasks


def test_when_and_what_tasks_are_right_by_construction():
    tasks = planned()
    assert sorted({t.kind for t in tasks}) == ["speech_what", "speech_when"] and all(t.family == "speech" for t in tasks)
    asked = {t.meta["line_source"][0] for t in tasks}
    # "ok" is too short, the repeated kettle line is ambiguous: neither is asked about
    assert asked <= {60.0, 100.0, 220.0}
    by_start = {line["start_s"]: line for line in TRANSCRIPTS}
    for task in tasks:
        w0, w1 = task.meta["window_source"]
        line = by_start[task.meta["line_source"][0]]
        assert w0 <= line["start_s"] and line["end_s"] <= w1 and task.media[0].duration_s == w1 - w0
        if task.kind == "speech_when":
            assert line["text"] in task.question
            assert task.ground_truth["spans"] == [[round(line["start_s"] - w0, 2), round(line["end_s"] - w0, 2)]]
            assert score("temporal_iou", task.answer, task.ground_truth) == 1.0
            assert score("temporal_iou", "0-1 seconds", task.ground_truth) < 0.5
        else:
            assert task.answer == line["text"] and line["text"] in task.options
            assert len(task.options) == 4 and len(set(task.options)) == 4
            assert score("exact", "The Kettle... " + task.answer.upper() + "!", task.ground_truth) == 0.0
            assert score("exact", task.answer.upper() + "!", task.ground_truth) == 1.0
            wrong = next(o for o in task.options if o != task.answer)
            assert score("exact", wrong, task.ground_truth) == 0.0


def test_speech_tasks_are_deterministic_and_export_as_sft_and_rl():
    first, second = planned(), planned()
    assert [t.model_dump() for t in first] == [t.model_dump() for t in second]
    sft, rl = export_rows(first, TasksConfig(rl_overlap=True))
    assert {r["family"] for r in sft} == {"speech"} and {r["family"] for r in rl} == {"speech"}
    for row in rl:
        assert score(row["reward_rule"], row["answer"], row["ground_truth"]) == 1.0
        assert json.loads(row["answer_key"])["media"]


def test_no_transcripts_no_speech_tasks():
    assert plan_video_tasks(VIDEO, CLIPS, [], SPEECH_ONLY, transcripts=[]).tasks == []
