"""Task planning, splits and exports on synthetic clip and annotation records."""

import json
import random

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.ids import split_of
from vidcorpus.schemas.tables import RL_SCHEMA, SFT_SCHEMA
from vidcorpus.tasks.build import build_foreign_pool, plan_corpus_tasks, plan_video_tasks
from vidcorpus.tasks.checks import SchemaError, validate_rows, validate_table
from vidcorpus.tasks.export import export_rows, task_annotation, to_rl_row, to_sft_row
from vidcorpus.tasks.grounding import evidence_spans, grounding_task_id, plan_grounding_tasks, verification_passed
from vidcorpus.tasks.niah import plan_niah_probes
from vidcorpus.tasks.ordering import plan_ordering_tasks
from vidcorpus.tasks.records import EditList
from vidcorpus.tasks.rewards import score

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def video_record(video_id, fps=25.0):
    return {"video_id": video_id, "uri": f"/data/{video_id}.mp4", "fps": fps, "width": 1280, "height": 720,
            "display_width": 1280, "display_height": 720, "duration_s": 200.0, "split": split_of(video_id, FRACTIONS)}


def clip_records(video_id, durations, start=0.0, dup_groups=None):
    clips, t = [], start
    for index, duration in enumerate(durations):
        clip = {"clip_id": f"{video_id}_{index:04d}", "video_id": video_id, "index": index,
                "start_s": t, "end_s": t + duration, "duration_s": duration}
        if dup_groups and dup_groups[index] is not None:
            clip["dup_group"] = dup_groups[index]
        clips.append(clip)
        t += duration
    return clips


def caption(clip, text):
    return {"ann_id": f"{clip['clip_id']}_caption_0000", "video_id": clip["video_id"], "clip_id": clip["clip_id"],
            "kind": "caption", "payload": json.dumps({"caption": text})}


def small_corpus(videos=6, clips_per_video=12):
    video_records, clips, annotations = [], [], []
    for v in range(videos):
        video_id = f"v{v:015x}a"
        video_records.append(video_record(video_id))
        own = clip_records(video_id, [4.0 + (i % 3) for i in range(clips_per_video)])
        clips += own
        annotations += [caption(c, f"scene {i} of video {v}") for i, c in enumerate(own)]
    return video_records, clips, annotations


def config(**overrides):
    base = {"niah": {"grid": {"haystack_s": [20.0, 40.0]}, "probes_per_video": 4, "foreign_pool_fraction": 1.0}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return TasksConfig.model_validate(base)


# --------------------------------------------------------------------------- config and splits


def test_config_defaults_and_validation():
    defaults = TasksConfig()
    assert defaults.media_mode == "written" and defaults.niah.grid.kinds == ["rendered", "foreign", "multi"]
    assert TasksConfig.model_validate(defaults.model_dump()) == defaults
    with pytest.raises(ValidationError):
        TasksConfig.model_validate({"splits": {"fractions": {"train": 1.0}}})  # splits are shards.splits only
    with pytest.raises(ValidationError):
        TasksConfig.model_validate({"niah": {"grid": {"depths": [1.5]}}})
    with pytest.raises(ValidationError):
        TasksConfig.model_validate({"niah": {"grid": {"kinds": ["audio"]}}})
    with pytest.raises(ValidationError):
        TasksConfig.model_validate({"ordering": {"k": 1}})


def test_split_is_a_function_of_the_video_id_with_the_configured_shares():
    ids = [f"v{i:016x}" for i in range(3000)]
    splits = [split_of(i, FRACTIONS) for i in ids]
    for name, share in FRACTIONS.items():
        assert splits.count(name) / len(ids) == pytest.approx(share, abs=0.03)
    assert {split_of(i, {"train": 1.0, "val": 0.0}) for i in ids[:200]} == {"train"}


def test_exported_samples_never_straddle_splits():
    videos, clips, annotations = small_corpus(videos=12)
    cfg = config(niah={"choice_options": 8})  # more options than a haystack has captions
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    sft, rl = export_rows(planned.tasks, cfg.export)
    assert {t.kind for t in planned.tasks} >= {"niah_foreign_span", "niah_rendered_text", "order_clips",
                                                "grounding_caption"}
    split_of_caption = {json.loads(a["payload"])["caption"]: split_of(a["video_id"], FRACTIONS)
                        for a in annotations}
    for row in sft + rl:
        assert {split_of(v, FRACTIONS) for v in row["video_ids"]} == {row["split"]}
    for row in rl:  # not even the text of another split's captions shows up as an option
        assert {split_of_caption[o] for o in row["options"]} <= {row["split"]}
    by_split: dict[str, set] = {}
    for row in rl:
        for video_id in row["video_ids"]:
            by_split.setdefault(row["split"], set()).add(video_id)
    names = sorted(by_split)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not by_split[a] & by_split[b]


# --------------------------------------------------------------------------- NIAH planning


def test_niah_plan_is_deterministic_and_independent_of_input_order():
    videos, clips, annotations = small_corpus()
    cfg = config()
    first = plan_corpus_tasks(videos, clips, annotations, cfg)
    shuffled = clips[:]
    random.Random(7).shuffle(shuffled)
    again = plan_corpus_tasks(list(reversed(videos)), shuffled, list(reversed(annotations)), cfg)
    assert [p.model_dump_json() for p in first.probes] == [p.model_dump_json() for p in again.probes]
    assert [t.model_dump_json() for t in first.tasks] == [t.model_dump_json() for t in again.tasks]
    other_seed = plan_corpus_tasks(videos, clips, annotations, config(seed=1))
    assert [p.model_dump_json() for p in other_seed.probes] != [p.model_dump_json() for p in first.probes]


def test_niah_probes_respect_grid_frame_grid_and_haystack_bounds():
    videos, clips, _ = small_corpus()
    cfg = config(niah={"probes_per_video": 50})
    video = videos[0]
    own = [c for c in clips if c["video_id"] == video["video_id"]]
    pool = build_foreign_pool({v["video_id"]: v for v in videos}, clips, [], cfg)
    specs = plan_niah_probes(video, own, cfg, pool)
    cells = {(s.haystack_s, s.kind, s.depth) for s in specs}
    assert len(cells) == len(specs) == 2 * (3 + 3) + 1  # every feasible cell once (multi needs 30 s for 5 needles)
    fps = specs[0].edit.fps
    assert fps == 8.0 and (specs[0].edit.width, specs[0].edit.height) == (640, 360)  # 25 fps source, max_fps 8
    for spec in specs:
        assert spec.haystack_s in (20.0, 40.0)
        start = spec.haystack_source.start_s  # a clip's start, moved onto the probe frame grid
        assert abs(start * fps - round(start * fps)) < 1e-6
        assert spec.haystack_clip_ids and any(c["start_s"] <= start < c["start_s"] + 1 / fps for c in own)
        assert spec.haystack_source.end_s <= own[-1]["end_s"]
        for needle in spec.needles:
            for t in (needle.span.start_s, needle.span.end_s):
                assert abs(t * fps - round(t * fps)) < 1e-6
            assert 0 <= needle.span.start_s < needle.span.end_s <= spec.edit.duration_s + 1e-9
        if spec.kind == "rendered":
            (needle,) = spec.needles
            assert 1.0 - 1 / fps <= needle.span.duration_s <= 3.0 + 1 / fps
            overlaid = [s for s in spec.edit.segments if s.overlay]
            assert [(s.start_s, s.end_s) for s in overlaid] == [(needle.span.start_s, needle.span.end_s)]
            assert overlaid[0].overlay.text == needle.text
        if spec.kind == "foreign":
            (needle,) = spec.needles
            entry = next(e for e in pool if e["clip_id"] == needle.clip_id)
            assert entry["video_id"] != video["video_id"] and entry["split"] == spec.split
            own_s = spec.haystack_s - needle.span.duration_s  # the haystack is trimmed by the needle
            assert needle.span.start_s == pytest.approx(spec.depth * own_s, abs=1 / fps)
            assert spec.edit.duration_s == pytest.approx(spec.haystack_s)
            piece = next(s for s in spec.edit.segments if s.role == "needle")
            assert entry["start_s"] <= piece.source_start_s < piece.source_end_s <= entry["end_s"] + 1e-9
        if spec.kind == "multi":
            spans = [(n.span.start_s, n.span.end_s) for n in spec.needles]
            assert spans == sorted(spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_foreign_needles_need_a_same_split_pool_and_skip_near_duplicates():
    videos, clips, _ = small_corpus(videos=2)
    cfg = config(niah={"grid": {"haystack_s": [20.0], "kinds": ["foreign"]}, "probes_per_video": 5})
    haystack, other = videos
    own = [c for c in clips if c["video_id"] == haystack["video_id"]]
    pool = build_foreign_pool({v["video_id"]: v for v in videos}, clips, [], cfg)
    assert plan_niah_probes(haystack, own, cfg, []) == []
    wrong_split = [{**e, "split": "elsewhere"} for e in pool]
    assert plan_niah_probes(haystack, own, cfg, wrong_split) == []
    same_video = [e for e in pool if e["video_id"] == haystack["video_id"]]
    assert plan_niah_probes(haystack, own, cfg, same_video) == []
    grouped_own = [{**c, "dup_group": "g1"} for c in own]
    duplicates = [{**e, "dup_group": "g1"} for e in pool if e["video_id"] == other["video_id"]]
    assert plan_niah_probes(haystack, grouped_own, cfg, duplicates) == []
    assert plan_niah_probes(haystack, own, cfg, pool)


def test_probe_questions_are_answered_by_their_records():
    videos, clips, annotations = small_corpus()
    cfg = config(niah={"probes_per_video": 50})
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    probes = {p.probe_id: p for p in planned.probes}
    captions = {a["clip_id"]: json.loads(a["payload"])["caption"] for a in annotations}
    kinds = set()
    for task in planned.tasks:
        if task.family != "niah":
            continue
        spec = probes[task.source_ids[0]]
        kinds.add(task.kind)
        assert score(task.reward_rule, task.answer, task.ground_truth) == 1.0
        if task.kind.endswith("_text"):
            assert task.ground_truth == spec.needles[0].text
        elif task.kind.endswith("_span") or task.kind.endswith("_spans"):
            assert task.ground_truth["spans"] == [[round(n.span.start_s, 2), round(n.span.end_s, 2)]
                                                  for n in spec.needles]
            assert task.ground_truth["duration_s"] == pytest.approx(spec.edit.duration_s, abs=0.01)
        elif task.kind.endswith("_count"):
            assert task.ground_truth == len(spec.needles) >= 1
        elif task.kind.endswith("_order"):
            assert task.ground_truth == [n.text for n in sorted(spec.needles, key=lambda n: n.span.start_s)]
        elif task.kind.endswith("_content"):
            letter = task.ground_truth["answer"]
            assert task.options["ABCDEFGH".index(letter)] == spec.needles[0].caption
            assert len(set(task.options)) == len(task.options) == 4
            haystack_captions = {captions[c] for c in spec.haystack_clip_ids}
            assert set(task.options) - {spec.needles[0].caption} <= haystack_captions  # shown, but not out of place
        assert 0.0 <= task.difficulty <= 1.0
    assert kinds == {"niah_rendered_text", "niah_rendered_span", "niah_foreign_span", "niah_foreign_content",
                     "niah_multi_count", "niah_multi_order", "niah_multi_spans"}


def test_longer_haystacks_are_harder():
    videos, clips, annotations = small_corpus()
    planned = plan_corpus_tasks(videos, clips, annotations, config(niah={"probes_per_video": 50}))
    spans = [t for t in planned.tasks if t.kind == "niah_rendered_span"]
    by_length = {}
    for task in spans:
        by_length.setdefault(task.meta["haystack_s"], []).append(task.difficulty)
    assert sum(by_length[40.0]) / len(by_length[40.0]) > sum(by_length[20.0]) / len(by_length[20.0])


# --------------------------------------------------------------------------- ordering


def test_ordering_answer_restores_time_order():
    video = video_record("vorder0000000001")
    clips = clip_records(video["video_id"], [3.0, 4.0, 2.0, 6.0, 3.0, 5.0, 2.5, 4.0])
    cfg = config(ordering={"k": 4, "per_video": 3})
    tasks = plan_ordering_tasks(video, clips, cfg)
    assert len(tasks) == 3 and len({tuple(t.source_ids) for t in tasks}) == 3
    for task in tasks:
        assert task.media_labels == ["Clip 1", "Clip 2", "Clip 3", "Clip 4"]
        shown_starts = [m.start_s for m in task.media]
        restored = [shown_starts[label - 1] for label in task.ground_truth]
        assert restored == sorted(shown_starts)  # the answer lists the shown clips earliest first
        assert task.ground_truth != [1, 2, 3, 4]  # never shown in the original order
        assert sorted(task.ground_truth) == [1, 2, 3, 4]
        assert score("order", task.answer, task.ground_truth) == 1.0
    assert tasks == plan_ordering_tasks(video, list(reversed(clips)), cfg)


def test_ordering_never_shows_two_clips_of_one_dup_group():
    video = video_record("vorder0000000002")
    groups = ["a", "a", "b", "a", "c", None, "b", "c"]
    clips = clip_records(video["video_id"], [3.0] * 8, dup_groups=groups)
    cfg = config(ordering={"k": 4, "per_video": 10})
    tasks = plan_ordering_tasks(video, clips, cfg)
    assert tasks
    group_of = {c["clip_id"]: c.get("dup_group") or c["clip_id"] for c in clips}
    for task in tasks:
        assert len({group_of[c] for c in task.source_ids}) == 4
    assert plan_ordering_tasks(video, clips, config(ordering={"k": 5})) == []  # only 4 distinct groups


def test_ordering_shows_the_middle_of_long_clips_and_skips_short_ones():
    video = video_record("vorder0000000003")
    clips = clip_records(video["video_id"], [30.0, 0.5, 3.0, 4.0, 5.0])
    (task,) = plan_ordering_tasks(video, clips, config(ordering={"k": 4, "per_video": 1, "max_clip_s": 10.0}))
    assert f"{video['video_id']}_0001" not in task.source_ids
    long_clip = next(m for m in task.media if m.clip_id.endswith("_0000"))
    assert (long_clip.start_s, long_clip.end_s) == (10.0, 20.0)


# --------------------------------------------------------------------------- grounding


def test_caption_grounding_span_is_the_clip_inside_its_window():
    video = video_record("vground000000001")
    clips = clip_records(video["video_id"], [10.0] * 30)
    annotations = [caption(c, f"event number {i}") for i, c in enumerate(clips)]
    cfg = config(grounding={"window_s": 60.0, "per_video": 6, "from_qa": False})
    tasks = plan_grounding_tasks(video, clips, annotations, cfg)
    assert len(tasks) == 6
    for task in tasks:
        (media,) = task.media
        clip = next(c for c in clips if c["clip_id"] == task.meta["clip_id"])
        assert media.end_s - media.start_s == pytest.approx(60.0)
        assert media.start_s <= clip["start_s"] and clip["end_s"] <= media.end_s
        offset = media.start_s
        assert task.ground_truth == {"spans": [[round(clip["start_s"] - offset, 2), round(clip["end_s"] - offset, 2)]],
                                     "duration_s": 60.0}
        index = int(clip["clip_id"].rsplit("_", 1)[1])
        assert f'"event number {index}"' in task.question
        assert score("temporal_iou", task.answer, task.ground_truth) == 1.0
    assert len({(t.media[0].start_s - t.meta["event_source"][0][0]) for t in tasks}) > 1  # not always centred


def test_grounding_skips_ambiguous_events_gaps_and_failed_qa():
    video = video_record("vground000000002")
    first = clip_records(video["video_id"], [10.0] * 5)
    second = clip_records("tmp", [10.0] * 5, start=70.0)  # a 20 s gap after the first run
    second = [{**c, "clip_id": f"{video['video_id']}_{5 + i:04d}", "video_id": video["video_id"]}
              for i, c in enumerate(second)]
    clips = first + second
    annotations = [caption(c, "a dog runs" if i in (0, 1) else f"event {i}") for i, c in enumerate(clips)]
    annotations += [
        # as the QA annotator writes it
        {"ann_id": "qa_ok", "video_id": video["video_id"], "clip_id": None, "kind": "qa",
         "payload": json.dumps({"question": "What colour is the car?", "options": None, "answer": "red",
                                "question_type": "detail",
                                "evidence": [{"clip_id": clips[5]["clip_id"], "start_s": 72.0, "end_s": 75.0},
                                             {"clip_id": clips[6]["clip_id"], "start_s": 80.0, "end_s": 81.0}]}),
         "evidence_spans": [[72.0, 75.0], [80.0, 81.0]], "verdicts": json.dumps({"passed": True})},
        {"ann_id": "qa_blind", "video_id": video["video_id"], "kind": "qa", "verdicts": json.dumps({"passed": False}),
         "payload": json.dumps({"question": "Is it day?", "answer": "yes"}), "evidence_spans": [[20.0, 22.0]]},
        {"ann_id": "qa_failed", "video_id": video["video_id"], "kind": "qa", "verification": {"passed": False},
         "payload": {"question": "Who wins?", "answer": "blue", "evidence": [[10.0, 12.0]]}},
        {"ann_id": "qa_across_gap", "video_id": video["video_id"], "kind": "qa",
         "payload": {"question": "What happens?", "answer": "x"}, "evidence_spans": [[45.0, 55.0], [72.0, 74.0]]},
    ]
    cfg = config(grounding={"window_s": 40.0, "per_video": 50})
    tasks = plan_grounding_tasks(video, clips, annotations, cfg)
    ids = {t.task_id for t in tasks}
    ground = {name: grounding_task_id(video["video_id"], name) for name in ("qa_ok", "qa_across_gap", "qa_failed",
                                                                          "qa_blind")}
    assert ground["qa_ok"] in ids and ground["qa_across_gap"] not in ids
    assert ground["qa_failed"] not in ids and ground["qa_blind"] not in ids
    assert not any("a dog runs" in t.question for t in tasks)  # two clips share it within any window
    for task in tasks:
        start, end = task.media[0].start_s, task.media[0].end_s
        assert end <= 50.0 or start >= 70.0  # never across the gap
    qa = next(t for t in tasks if t.task_id == ground["qa_ok"])
    offset = qa.media[0].start_s
    assert qa.ground_truth["spans"] == [[round(72.0 - offset, 2), round(75.0 - offset, 2)],
                                        [round(80.0 - offset, 2), round(81.0 - offset, 2)]]
    assert score("temporal_iou", qa.answer, qa.ground_truth) == 1.0
    assert qa.meta["answer"] == "red"


def test_annotation_readers_accept_the_usual_shapes():
    assert evidence_spans({"evidence": [{"start_s": 1, "end_s": 2}]}) == [(1.0, 2.0)]
    assert evidence_spans({"payload": json.dumps({"evidence_spans": [[3, 4], [1, 2]]})}) == [(1.0, 2.0), (3.0, 4.0)]
    assert evidence_spans({"evidence": {"start": 5, "end": 6}}) == [(5.0, 6.0)]
    assert evidence_spans({"evidence": [[4, 3]]}) == []
    assert verification_passed({}) and not verification_passed({"verified": False})
    assert not verification_passed({"verification": json.dumps({"ok": False})})
    assert verification_passed({"verification": {"passed": True}})
    assert not verification_passed({"verdicts": json.dumps({"passed": False, "blind_answerable": True})})


# --------------------------------------------------------------------------- exports and schemas


@pytest.mark.parametrize("media_as", ["video", "frames"])
def test_exports_validate_and_round_trip_through_parquet(tmp_path, media_as):
    videos, clips, annotations = small_corpus()
    cfg = config(export={"media_as": media_as, "frames_per_video": 4, "max_frame_interval_s": None,
                         "system_prompt": "You watch videos."})
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    sft, rl = export_rows(planned.tasks, cfg.export)
    assert len(sft) == len(rl) == len(planned.tasks) > 20
    for name, rows, schema in (("sft", sft, SFT_SCHEMA), ("rl", rl, RL_SCHEMA)):
        table = validate_rows(name, rows, splits=FRACTIONS)
        assert table.schema.equals(schema)
        pq.write_table(table, tmp_path / f"{name}.parquet")
        validate_table(name, pq.read_table(tmp_path / f"{name}.parquet"), splits=FRACTIONS)
    order = next(r for r in sft if r["family"] == "order")
    assert [m["label"] for m in order["media"]] == ["Clip 1", "Clip 2", "Clip 3", "Clip 4"]
    human = order["conversations"][1]["value"]
    if media_as == "video":
        assert human.count("<video>") == 4 and not order["frames"]
        assert [p["media_index"] for p in order["messages"][1]["content"] if p["type"] == "video"] == [0, 1, 2, 3]
    else:
        assert human.count("<image>") == 16 == len(order["frames"])
        images = [p for p in order["messages"][1]["content"] if p["type"] == "image"]
        assert all(0 < p["timestamp_s"] < order["media"][p["media_index"]]["duration_s"] for p in images)
    assert order["messages"][0] == {"role": "system", "content": [
        {"type": "text", "text": "You watch videos.", "media_index": None, "timestamp_s": None}]}
    assert order["messages"][-1]["content"][0]["text"] == order["conversations"][-1]["value"]


def test_frames_mode_never_skips_a_needle_or_event():
    videos, clips, annotations = small_corpus()
    cfg = config(niah={"probes_per_video": 50}, export={"media_as": "frames", "frames_per_video": 8})
    planned = plan_corpus_tasks(videos, clips, annotations, cfg)
    checked = 0
    for task in planned.tasks:
        if task.reward_rule != "temporal_iou":
            continue
        row = to_sft_row(task, cfg.export)
        times = [f["timestamp_s"] for f in row["frames"]]
        assert len(times) >= task.media[0].duration_s / cfg.export.max_frame_interval_s - 1e-6
        for start, end in task.ground_truth["spans"]:
            assert any(start <= t < end for t in times), (task.task_id, start, end)
            checked += 1
    assert checked > 50


def test_rl_rows_carry_what_a_trainer_needs():
    videos, clips, annotations = small_corpus()
    planned = plan_corpus_tasks(videos, clips, annotations, config())
    rows = [to_rl_row(t) for t in planned.tasks]
    assert {r["reward_rule"] for r in rows} == {"exact", "choice", "order", "temporal_iou"}
    for row in rows:
        assert score(row["reward_rule"], row["answer"], row["ground_truth"]) == 1.0
        assert row["prompt"] in row["prompt_messages"][-1]["content"][-1]["text"]
        assert row["prompt"].rstrip().endswith(".") and "Answer with" in row["prompt"]
        assert row["sample_id"] == f"{row['task_id']}_rl"
    probe_row = next(r for r in rows if r["family"] == "niah")
    (media,) = probe_row["media"]
    (recipe,) = json.loads(probe_row["answer_key"])["media"]
    assert recipe["media_id"] == media["media_id"] and media["uri"] == f"probes/{recipe['probe_id']}.mp4"
    assert EditList.model_validate(recipe["edit_list"]).duration_s == pytest.approx(media["duration_s"])
    assert f"The video is {media['duration_s']:.2f}".rstrip("0").rstrip(".") in probe_row["prompt"]


def test_reference_mode_points_at_edit_lists_only():
    videos, clips, annotations = small_corpus()
    planned = plan_corpus_tasks(videos, clips, annotations, config(media_mode="reference"))
    probe_media = [m for t in planned.tasks for m in t.media if m.kind == "probe"]
    assert probe_media and all(m.uri is None and m.edit_list is not None for m in probe_media)
    validate_rows("rl", [to_rl_row(t) for t in planned.tasks])


def test_validation_rejects_broken_rows():
    videos, clips, annotations = small_corpus(videos=2)
    task = plan_corpus_tasks(videos, clips, annotations, config()).tasks[0]
    row = to_rl_row(task)
    with pytest.raises(SchemaError, match="reward 1"):
        validate_rows("rl", [{**row, "ground_truth": json.dumps([[999.0, 1000.0]]) if task.reward_rule == "temporal_iou"
                              else json.dumps("nothing like it")}])
    with pytest.raises(SchemaError, match="duplicate"):
        validate_rows("rl", [row, row])
    with pytest.raises(SchemaError, match="missing column"):
        validate_rows("rl", [{k: v for k, v in row.items() if k != "difficulty"}])
    with pytest.raises(SchemaError, match="unknown split"):
        validate_rows("rl", [{**row, "split": "holdout"}], splits=FRACTIONS)
    sft = to_sft_row(task)
    broken = json.loads(json.dumps(sft))
    broken["frames"] = [{"media_index": 0, "timestamp_s": 1.0}]
    with pytest.raises(SchemaError, match="<image>"):
        validate_rows("sft", [broken])
    broken = json.loads(json.dumps(sft))
    broken["messages"][0]["content"].insert(0, {"type": "video", "text": None, "media_index": 5, "timestamp_s": None})
    with pytest.raises(SchemaError, match="points at media 5"):
        validate_rows("sft", [broken])


def test_ids_are_deterministic_and_unique():
    videos, clips, annotations = small_corpus()
    cfg = config()
    first = plan_corpus_tasks(videos, clips, annotations, cfg)
    ids = [t.task_id for t in first.tasks]
    assert len(ids) == len(set(ids)) and all("." not in i for i in ids)
    assert ids == [t.task_id for t in plan_corpus_tasks(videos, clips, annotations, cfg).tasks]
    assert all(i.startswith(t.video_id) for i, t in zip(ids, first.tasks))
    for task in first.tasks:
        annotation = task_annotation(task)
        assert annotation["ann_id"] == task.task_id and annotation["kind"] == task.family
        assert json.loads(annotation["payload"])["ground_truth"] == task.ground_truth
        assert annotation["model"] == "code" and json.loads(annotation["verdicts"])["passed"]
        assert annotation["evidence_spans"] and all(0 <= s < e <= 200 for s, e in annotation["evidence_spans"])
        if task.family == "grounding" and task.kind == "grounding_caption":
            clip = next(c for c in clips if c["clip_id"] == annotation["clip_id"])
            assert annotation["evidence_spans"] == [[clip["start_s"], clip["end_s"]]]


def test_disabled_families_produce_nothing():
    videos, clips, annotations = small_corpus(videos=2)
    off = config(enabled=False)
    assert plan_video_tasks(videos[0], clips, annotations, off).tasks == []
    only_order = config(niah={"enabled": False}, grounding={"enabled": False})
    planned = plan_corpus_tasks(videos, clips, annotations, only_order)
    assert planned.probes == [] and {t.family for t in planned.tasks} == {"order"}


def test_the_foreign_pool_keeps_the_lowest_hashes_of_each_split_in_the_pipeline_and_in_memory():
    """The pool every tasks worker receives stops growing with the corpus: the pipeline's top-k
    (Beam, per split) and the in-memory builder pick the same `foreign_pool_max` clips."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from vidcorpus.pipelines.tasks import ForeignPool
    from vidcorpus.runners import local_runner, pipeline_options

    videos, clips, _ = small_corpus(videos=6)
    cfg = config(niah={"foreign_pool_fraction": 1.0, "foreign_pool_max": 3})
    by_id = {v["video_id"]: v for v in videos}
    pool = build_foreign_pool(by_id, clips, [], cfg)
    splits = {v["split"] for v in videos}
    assert len(pool) == 3 * len(splits) < len(clips)
    everything = build_foreign_pool(by_id, clips, [], config(niah={"foreign_pool_fraction": 1.0}))
    assert len(everything) == len(clips)
    results = [{"video": v, "clips": [c for c in clips if c["video_id"] == v["video_id"]], "tables": {}}
               for v in videos]
    with beam.Pipeline(runner=local_runner("direct", pipeline_options("direct")),
                       options=pipeline_options("direct")) as p:
        picked = p | beam.Create(results) | ForeignPool(cfg) | beam.Map(lambda e: e["clip_id"])
        assert_that(picked, equal_to([e["clip_id"] for e in pool]))
