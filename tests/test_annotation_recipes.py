"""The published recipes the annotations follow, checked on the requests a local
OpenAI-compatible server receives: frames that cover each clip, differential captions, entities
applied, QA and CoT that see pixels, spans that are really checked, balanced multiple choice,
bounded context and complete accounting."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from llm_server import FakeLLMServer, Fault
from test_annotators import (
    VIDEO_ID,
    bodies_of,
    by_kind,
    dropped_item,
    images_of,
    jpeg,
    make_config,
    make_video,
    user_text,
)

from vidcorpus.annotators import VideoAnnotator
from vidcorpus.annotators.frames import Frame, frames_for, frames_in_span, sample_positions, windows
from vidcorpus.annotators.qa import LETTERS, QAItem, shuffle_options
from vidcorpus.annotators.summaries import Entity, canonical
from vidcorpus.annotators.verifiers import check_spans

STAMP = re.compile(r"^([\d.]+) s:$")


def long_video(durations: list[float], candidates_per_s: float = 2.0):
    """Clips of the given lengths, each seen through `llm.frames_per_s` of its candidates."""
    video, clips, frames, start = {"video_id": VIDEO_ID, "uri": "/videos/long.mp4"}, [], {}, 0.0
    for i, duration in enumerate(durations):
        clip = {"clip_id": f"{VIDEO_ID}_{i:04d}", "video_id": VIDEO_ID, "index": i, "start_s": start,
                "end_s": start + duration, "duration_s": duration}
        times = [start + (k + 0.5) / candidates_per_s for k in range(int(duration * candidates_per_s))]
        picked = sample_positions(times, start, start + duration, frames_for(duration, 0.5, 2))
        frames[clip["clip_id"]] = [(times[p], jpeg((7 * i + p) % 250)) for p in picked]
        clips.append(clip)
        start += duration
    video["duration_s"] = start
    return video, clips, frames


def frame_times(body: dict) -> list[float]:
    content = body["messages"][1]["content"]
    if isinstance(content, str):
        return []
    return [float(m[1]) for p in content if p["type"] == "text" and (m := STAMP.match(p["text"]))]


def test_frames_per_clip_grow_with_its_length_and_cover_its_first_and_last_seconds():
    durations = [4.0, 20.0, 45.3]
    video, clips, frames = long_video(durations)
    with FakeLLMServer() as server:
        config = make_config(server, qa_per_video=0, max_frames=8)
        annotations, failures, _ = VideoAnnotator.from_config(config, env={}).annotate(video, clips, frames)
    assert failures == []
    captions = bodies_of(server, "clip_caption")
    seen = {c["clip_id"]: sorted(t for b in captions for t in frame_times(b) if c["start_s"] <= t < c["end_s"])
            for c in clips}
    counts = [len(seen[c["clip_id"]]) for c in clips]
    assert counts == [2, 10, 23] and counts == sorted(counts)  # 0.5 frames/s, at least 2
    for clip in clips:
        times = seen[clip["clip_id"]]
        assert times[0] - clip["start_s"] <= 2.0 and clip["end_s"] - times[-1] <= 2.0
        assert max(b - a for a, b in zip(times, times[1:])) <= 2.5  # no unseen stretch
    assert all(len(images_of(b)) <= 8 for b in captions)
    merges = [b for b in captions if not images_of(b)]
    assert len(merges) == 2 and "captioned in\n3 consecutive parts" in user_text(merges[-1])  # 10 -> 2, 23 -> 3
    long_caption = json.loads(by_kind(annotations, "caption")[2]["payload"])
    assert long_caption["windows"] == 3 and len(long_caption["frame_times"]) == 23
    assert by_kind(annotations, "caption")[2]["prompt_id"] == "caption_merge"
    assert all(i["detail"] == "high" for b in captions for i in images_of(b))


def test_sampling_and_windows_from_candidates():
    times = [0.25 + 0.5 * k for k in range(20)]  # 10 s of candidates
    picked = [times[p] for p in sample_positions(times, 0.0, 10.0, frames_for(10.0, 0.5, 2))]
    assert picked == [0.75, 2.75, 4.75, 6.75, 8.75]
    assert sample_positions(times[:2], 0.0, 1.0, 5) == [0, 1]  # fewer candidates than asked: all of them
    parts = windows([Frame(t, b"") for t in range(23)], 8)
    assert [len(p) for p in parts] == [8, 7, 8] and [f.t for p in parts for f in p] == list(range(23))
    nearest = frames_in_span([Frame(1.0, b"a"), Frame(3.0, b"b")], 2.6, 2.7, 4)
    assert nearest == [Frame(3.0, b"b")]


def test_each_differential_caption_request_carries_the_previous_clips_caption():
    video, clips, frames = make_video(n_clips=3)
    with FakeLLMServer() as server:
        annotations, _, _ = VideoAnnotator.from_config(make_config(server, qa_per_video=0), env={}).annotate(
            video, clips, frames)
    requests = bodies_of(server, "clip_caption")
    captions = [json.loads(a["payload"]) for a in by_kind(annotations, "caption")]
    assert "Caption of the previous" not in user_text(requests[0])
    for previous, body in zip(captions, requests[1:]):
        assert previous["caption"] in user_text(body)
        assert "what changed and what is new" in user_text(body)
        assert len(images_of(body)) == 2  # only this clip's frames: no repeated image
    assert [c["previous_caption_of"] for c in captions] == [None, clips[0]["clip_id"], clips[1]["clip_id"]]
    assert captions[1]["changes_since_previous"] and captions[0]["changes_since_previous"] is None


def test_entities_are_applied_to_captions_and_given_with_aliases_to_qa_and_cot():
    video, clips, frames = make_video(n_clips=2)
    with FakeLLMServer() as server:
        annotations, _, _ = VideoAnnotator.from_config(make_config(server, qa_per_video=2), env={}).annotate(
            video, clips, frames)
    caption = json.loads(by_kind(annotations, "caption")[0]["payload"])
    assert caption["caption"].startswith("A man in a red jacket")
    assert caption["canonical_caption"].startswith("A red-jacket man walks")
    for body in bodies_of(server, "qa_set") + bodies_of(server, "cot_trace"):
        text = user_text(body)
        assert "- red-jacket man (also: man in a red jacket)" in text
        assert "red-jacket man walks past" in text and "man in a red jacket walks" not in text
    entities = [Entity(name="Ana", aliases=["the woman", "woman in blue"], description=""),
                Entity(name="Ben", aliases=["the man"], description="")]
    assert canonical("A Woman in blue waves; THE MAN nods to the woman.", entities) == "A Ana waves; Ben nods to Ana."


def test_qa_and_cot_requests_carry_the_frames_of_the_clips_they_may_cite_unless_text_only():
    video, clips, frames = make_video(n_clips=3, keyframes=4)
    with FakeLLMServer() as server:
        VideoAnnotator.from_config(make_config(server, qa_per_video=2, max_frames=6), env={}).annotate(video, clips, frames)
        qa, = bodies_of(server, "qa_set")
        cots = bodies_of(server, "cot_trace")
        visuals = bodies_of(server, "visual_answer")
    assert len(images_of(qa)) == 6 and cots and visuals
    sent = {i["url"] for i in images_of(qa)}
    from vidcorpus.annotators.frames import jpeg_data_url
    assert sent <= {jpeg_data_url(j) for fs in frames.values() for _, j in fs}
    for cot in cots:
        cited = re.search(r"in clip (\S+?)\?", user_text(cot))[1]
        clip = next(c for c in clips if c["clip_id"] == cited)
        assert images_of(cot) and all(clip["start_s"] <= t < clip["end_s"] for t in frame_times(cot))
    for visual in visuals:  # only frames inside the span, and no captions
        assert images_of(visual) and "red jacket" not in user_text(visual) and " - " not in user_text(visual)
    with FakeLLMServer() as server:
        config = make_config(server, qa_per_video=2, qa_frames=False)
        VideoAnnotator.from_config(config, env={}).annotate(video, clips, frames)
        assert not any(images_of(b) for b in bodies_of(server, "qa_set") + bodies_of(server, "cot_trace"))


def test_a_whole_video_span_citing_a_short_clip_fails_the_span_check():
    clips = {"c1": {"start_s": 20.0, "end_s": 24.3}}
    item = QAItem(question="What does he hold?", options=None, answer="a cup", question_type="detail",
                  evidence=[{"clip_id": "c1", "start_s": 0.0, "end_s": 49.6}])
    assert check_spans(item, 49.6, clips) == {"spans_in_video": True, "spans_on_cited_clips": False}
    inside = item.model_copy(update={"evidence": [item.evidence[0].model_copy(update={"start_s": 21.0, "end_s": 22.0})]})
    assert check_spans(inside, 49.6, clips)["spans_on_cited_clips"] is True


def test_shuffled_options_make_correct_letters_uniform():
    """A model that always puts the answer first still yields uniform letters (chi-square, 3 df)."""
    biased = QAItem(question="Which?", options=["right", "w1", "w2", "w3"], answer="A", question_type="detail",
                    evidence=[{"clip_id": "c", "start_s": 0, "end_s": 1}])
    shuffled = [shuffle_options(biased, f"{VIDEO_ID}_qa_{i:04d}") for i in range(400)]
    assert all(s.options[LETTERS.index(s.answer)] == "right" and sorted(s.options) == sorted(biased.options)
               for s in shuffled)
    counts = Counter(s.answer for s in shuffled)
    chi_square = sum((counts[letter] - 100) ** 2 / 100 for letter in "ABCD")
    assert chi_square < 11.34, counts  # p = 0.01
    assert shuffle_options(biased, "x") == shuffle_options(biased, "x")  # deterministic
    open_item = biased.model_copy(update={"options": None, "answer": "right"})
    assert shuffle_options(open_item, "x") == open_item


def test_letter_histogram_reaches_usage():
    video, clips, frames = make_video(n_clips=4)
    with FakeLLMServer(quirks=False) as server:
        annotations, _, usage = VideoAnnotator.from_config(make_config(server, qa_per_video=8), env={}).annotate(
            video, clips, frames)
    letters = {k[-1]: v for k, v in usage.items() if k.startswith("qa_letter_")}
    kept = [json.loads(a["payload"]) for a in by_kind(annotations, "qa")]
    assert Counter(item["answer"] for item in kept if item["options"]) == letters
    assert sum(letters.values()) == 4 and len(kept) == usage["qa_kept"] == 8


def test_fewer_questions_than_asked_is_a_row():
    video, clips, frames = make_video()
    with FakeLLMServer(max_qa_items=2, quirks=False) as server:
        _, failures, usage = VideoAnnotator.from_config(make_config(server, qa_per_video=5), env={}).annotate(
            video, clips, frames)
    row, = failures
    assert (row["stage"], row["item_id"], row["error_class"]) == ("annotate.verify.count", f"{VIDEO_ID}_qa",
                                                                  "FewerItemsThanAsked")
    assert "asked for 5 questions, got 2" in row["message"]
    assert usage["qa_fewer_than_asked"] == 3 and usage["qa_kept"] == 2


def test_a_summary_missing_a_chunk_says_what_it_covers():
    video, clips, frames = make_video(n_clips=6)
    fault = Fault("schema_invalid", pattern="covering 6.00-12.00 s", times=2)
    with FakeLLMServer(faults=[fault]) as server:
        config = make_config(server, summary_chunk_size=2, qa_per_video=0)
        annotations, failures, usage = VideoAnnotator.from_config(config, env={}).annotate(video, clips, frames)
    summary, = by_kind(annotations, "summary")
    assert summary["evidence_spans"] == [[0.0, 6.0], [12.0, 18.0]]
    assert json.loads(summary["verdicts"]) == {"complete": False, "chunks": 3, "chunks_covered": 2}
    assert [f["stage"] for f in failures] == ["annotate.summary"] and usage["summary_incomplete"] == 1


def test_qa_and_cot_context_is_bounded_and_spread_over_a_long_video():
    video, clips, frames = make_video(n_clips=30, clip_s=2.0)
    with FakeLLMServer(quirks=False) as server:
        config = make_config(server, qa_per_video=3, context_clips=4, summary_chunk_size=8)
        annotations, _, usage = VideoAnnotator.from_config(config, env={}).annotate(video, clips, frames)
    qa_bodies = bodies_of(server, "qa_set")
    lines = sorted(re.findall(r"^- (\S+) \[", user_text(b), re.MULTILINE) for b in qa_bodies)
    assert [len(ls) for ls in lines] == [4, 4, 4]
    assert lines[0][0] == clips[0]["clip_id"] and lines[-1][-1] == clips[-1]["clip_id"]  # start to end
    assert all(len(re.findall(r"^- \S+ \[", user_text(b), re.MULTILINE)) <= 4 for b in bodies_of(server, "cot_trace"))
    assert all("Summary of the whole video" in user_text(b) for b in qa_bodies)
    assert usage["qa_asked"] == 3
    ids = sorted(a["ann_id"] for a in by_kind(annotations, "qa"))
    assert ids == [f"{VIDEO_ID}_qa_{p:04d}" for p in range(3)]


@pytest.mark.parametrize("check", ["visual", "spans"])
def test_every_dropped_item_is_a_row_holding_it(check):
    video, clips, frames = make_video()
    with FakeLLMServer() as server:
        _, failures, usage = VideoAnnotator.from_config(make_config(server), env={}).annotate(video, clips, frames)
    rows = [f for f in failures if f["stage"] == f"annotate.verify.{check}"]
    assert len(rows) == usage[f"qa_dropped_{check}"] == 1
    item = dropped_item(rows[0])
    assert QAItem.model_validate(item).question.startswith("Question")
