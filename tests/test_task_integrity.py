"""Code-made tasks that cannot be gamed: nothing in a row a model sees gives the answer away,
probe lengths say nothing about needles, counts and orders are drawn uniformly, and SFT and RL
do not share tasks."""

import json
from collections import Counter
from itertools import permutations

import pytest

from tests.test_tasks import config, small_corpus
from vidcorpus.tasks.build import plan_corpus_tasks
from vidcorpus.tasks.checks import validate_rows
from vidcorpus.tasks.export import export_rows, media_unit
from vidcorpus.tasks.niah import frames_in, plan_niah_probes
from vidcorpus.tasks.ordering import shuffled_presentation
from vidcorpus.tasks.records import seeded_rng

FORWARDED = ("sample_id", "task_id", "family", "kind", "video_id", "video_ids", "split", "media", "media_as",
             "prompt", "prompt_messages", "options", "difficulty", "frames")


def chi_square(counts: Counter, categories: list) -> float:
    expected = sum(counts.values()) / len(categories)
    return sum((counts[c] - expected) ** 2 / expected for c in categories)


def test_no_probe_duration_reveals_its_needle():
    videos, clips, annotations = small_corpus()
    cfg = config(niah={"probes_per_video": 50, "grid": {"haystack_s": [20.0, 40.0]}})
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    fps = planned.probes[0].edit.fps
    grid = {frames_in(h, fps) / fps for h in (20.0, 40.0)}
    by_cell: dict[float, set] = {}
    for spec in planned.probes:
        assert spec.edit.duration_s == pytest.approx(spec.haystack_s) and spec.haystack_s in grid
        needle_s = sum(n.span.duration_s for n in spec.needles)
        by_cell.setdefault(spec.haystack_s, set()).add(round(needle_s, 3))
    assert all(len(lengths) > 3 for lengths in by_cell.values())  # many needle lengths, one probe length
    for task in planned.tasks:
        if task.family == "niah":
            assert task.media[0].duration_s in grid


def test_presented_orders_are_uniform_over_every_shuffle():
    counts = Counter(tuple(shuffled_presentation(4, seeded_rng(0, "v", "order", i))) for i in range(48000))
    shuffles = [p for p in permutations(range(4)) if p != (0, 1, 2, 3)]
    assert set(counts) == set(shuffles)
    assert chi_square(counts, shuffles) < 49.7  # 99.9th percentile of chi-square with 22 degrees of freedom
    assert max(counts.values()) / min(counts.values()) < 1.15


def test_multi_needle_counts_are_uniform_from_one_to_five():
    videos, clips, _ = small_corpus(videos=400, clips_per_video=12)
    cfg = config(niah={"grid": {"haystack_s": [40.0], "kinds": ["multi"]}, "probes_per_video": 1})
    counts = Counter()
    for video in videos:
        own = [c for c in clips if c["video_id"] == video["video_id"]]
        (spec,) = plan_niah_probes(video, own, cfg, [])
        counts[len(spec.needles)] += 1
    assert set(counts) == {1, 2, 3, 4, 5}
    assert chi_square(counts, [1, 2, 3, 4, 5]) < 18.5  # 99.9th percentile, 4 degrees of freedom
    assert max(counts.values()) / sum(counts.values()) < 0.3  # always answering one count earns ~20 %


def _forwarded_text(row: dict) -> str:
    seen = {k: v for k, v in row.items() if k in FORWARDED}
    if "messages" in row:  # SFT: everything but the assistant's answer
        seen["messages"] = [m for m in row["messages"] if m["role"] != "assistant"]
        seen["conversations"] = [t for t in row["conversations"] if t["from"] != "gpt"]
    return json.dumps(seen)


def test_rows_forward_no_answer_key():
    videos, clips, annotations = small_corpus()
    cfg = config(niah={"probes_per_video": 50}, rl_overlap=True)
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    sft, rl = export_rows(planned.tasks, cfg)
    by_task = {t.task_id: t for t in planned.tasks}
    clip_ids = {c["clip_id"] for c in clips}
    for row in sft + rl:
        assert set(row) - set(FORWARDED) <= {"messages", "conversations", "answer_key", "answer", "ground_truth",
                                             "reward_rule"}
        text = _forwarded_text(row)
        task = by_task[row["task_id"]]
        assert not any(c in text for c in clip_ids), row["sample_id"]  # clip ids sort by time
        assert "start_s" not in text and "edit_list" not in text and "needles" not in text
        if task.kind in ("niah_rendered_text", "niah_multi_order"):
            words = [n["text"] for n in task.meta["needles"]]
            assert not any(w in text for w in words), row["sample_id"]
        key = json.loads(row["answer_key"])
        assert [m["media_id"] for m in key["media"]] == [m["media_id"] for m in row["media"]]
    orders = [r for r in rl if r["family"] == "order"]
    chronological = 0
    for row in orders:  # opaque media ids: sorting them does not restore the order
        ids = [m["media_id"] for m in row["media"]]
        chronological += [ids.index(i) + 1 for i in sorted(ids)] == json.loads(row["ground_truth"])
    assert orders and chronological < len(orders) / 4


def test_sft_and_rl_share_no_task_by_default():
    videos, clips, annotations = small_corpus(videos=12)
    cfg = config(niah={"probes_per_video": 10})
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    sft, rl = export_rows(planned.tasks, cfg)
    validate_rows("sft", sft)
    validate_rows("rl", rl)
    sft_tasks, rl_tasks = {r["task_id"] for r in sft}, {r["task_id"] for r in rl}
    assert not sft_tasks & rl_tasks and sft_tasks | rl_tasks == {t.task_id for t in planned.tasks}
    assert 0.35 < len(rl) / len(planned.tasks) < 0.65  # tasks.rl_share = 0.5
    unit_of = {t.task_id: media_unit(t) for t in planned.tasks}
    assert not {unit_of[t] for t in sft_tasks} & {unit_of[t] for t in rl_tasks}  # one probe, one table
    assert {r["family"] for r in rl} == {r["family"] for r in sft} == {"niah", "order", "grounding"}
    sft_all, rl_all = export_rows(planned.tasks, config(niah={"probes_per_video": 10}, rl_overlap=True))
    assert len(sft_all) == len(rl_all) == len(planned.tasks)
    sft_only, none = export_rows(planned.tasks, config(niah={"probes_per_video": 10}, rl_share=0.0))
    assert len(sft_only) == len(planned.tasks) and none == []
