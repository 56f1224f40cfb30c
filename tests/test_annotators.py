"""Annotating whole videos against a local OpenAI-compatible server, and the pieces that do it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from llm_server import FakeLLMServer, Fault, image_tokens
from PIL import Image
from pydantic import ValidationError

from vidcorpus.annotators import VideoAnnotator
from vidcorpus.annotators.cot import CoTStep, CoTTrace
from vidcorpus.annotators.frames import jpeg_data_url
from vidcorpus.annotators.prompts import load_prompt, prompt_versions
from vidcorpus.annotators.qa import EvidenceSpan, QAItem, answer_key
from vidcorpus.annotators.records import split_usage
from vidcorpus.annotators.verifiers import (
    BlindAnswer,
    answered_blind,
    check_spans,
    cot_matches_answer,
    unique_questions,
)
from vidcorpus.config.llm import AnnotatorConfig, endpoint_configured, resolve_endpoint, skipped_reason
from vidcorpus.tasks.rewards import parse_choice

RECORD_FIELDS = {
    "ann_id", "kind", "video_id", "clip_id", "payload", "evidence_spans", "model", "prompt_id",
    "prompt_version", "request_hash", "tokens_in", "tokens_out", "cost_usd", "verdicts",
}
FAILURE_FIELDS = {"uri", "video_id", "stage", "error_class", "message", "attempts", "item_id"}
VIDEO_ID = "v0123456789abcdef"


def jpeg(shade: int, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 80)).save(out, "JPEG")
    return out.getvalue()


def make_video(n_clips: int = 4, clip_s: float = 3.0, keyframes: int = 2):
    """A video's rows and each clip's (time, JPEG) frames, `keyframes` per clip."""
    video = {"video_id": VIDEO_ID, "uri": "/videos/walk.mp4", "duration_s": n_clips * clip_s}
    clips = [
        {
            "clip_id": f"{VIDEO_ID}_{i:04d}", "video_id": VIDEO_ID, "index": i,
            "start_s": i * clip_s, "end_s": (i + 1) * clip_s, "duration_s": clip_s,
        }
        for i in range(n_clips)
    ]
    frames = {c["clip_id"]: [(i * clip_s + (j + 0.5) * clip_s / keyframes, jpeg(20 * i + j)) for j in range(keyframes)]
              for i, c in enumerate(clips)}
    return video, clips, frames


def make_config(server: FakeLLMServer, **overrides) -> AnnotatorConfig:
    settings = dict(base_url=server.base_url, qa_per_video=6, summary_chunk_size=8, timeout_s=2.0,
                    backoff_base_s=0.0, concurrency=4)
    return AnnotatorConfig(**{**settings, **overrides})


def by_kind(annotations: list[dict], kind: str) -> list[dict]:
    return [a for a in annotations if a["kind"] == kind]


def dropped_item(failure: dict) -> dict:
    """The item a verifier's failures row holds (its message is `reason: <item JSON>`)."""
    return json.loads(failure["message"][failure["message"].index("{"):])


def bodies_of(server: FakeLLMServer, schema: str) -> list[dict]:
    return [b for b in server.bodies if b["response_format"]["json_schema"]["name"] == schema]


def user_text(body: dict) -> str:
    content = body["messages"][1]["content"]
    return content if isinstance(content, str) else "\n".join(p["text"] for p in content if p["type"] == "text")


def images_of(body: dict) -> list[dict]:
    content = body["messages"][1]["content"]
    return [p["image_url"] for p in content if p["type"] == "image_url"] if isinstance(content, list) else []


def test_a_video_is_annotated_end_to_end_through_faults_and_a_rerun_makes_no_requests(tmp_path: Path):
    video, clips, frames = make_video()
    faults = [
        Fault("rate_limit", nth=1), Fault("server_error", nth=2), Fault("drop", nth=4),
        Fault("timeout", nth=6, sleep_s=1.0), Fault("truncated", pattern="qa_set"),
        Fault("invalid_json", pattern="cot_trace"),
    ]
    with FakeLLMServer(faults=faults) as server:
        config = make_config(server, cache_dir=str(tmp_path / "cache"), timeout_s=0.5)
        annotations, failures, usage = VideoAnnotator.from_config(config, env={}).annotate(video, clips, frames)
        requests_made = server.request_count
        again, again_failures, again_usage = VideoAnnotator.from_config(config, env={}).annotate(video, clips, frames)
        assert server.request_count == requests_made  # everything came from the cache

    assert len(server.fired) == 6
    run = usage.pop("run")
    assert (run["requests"], run["retries"], run["repairs"], run["cache_hits"]) == (requests_made, 5, 1, 0)
    assert usage["qa_dropped_duplicate"] == 1 and usage["qa_dropped_blind"] == 1
    assert all(set(a) == RECORD_FIELDS for a in annotations)

    captions = by_kind(annotations, "caption")
    assert [a["clip_id"] for a in captions] == [c["clip_id"] for c in clips]
    assert [a["evidence_spans"] for a in captions] == [[[c["start_s"], c["end_s"]]] for c in clips]
    assert [a["prompt_id"] for a in captions] == ["caption", "caption_diff", "caption_diff", "caption_diff"]
    summary, = by_kind(annotations, "summary")
    assert json.loads(summary["payload"])["entities"][0]["name"] == "red-jacket man"
    assert json.loads(summary["verdicts"]) == {"complete": True, "chunks": 1, "chunks_covered": 1}

    # every planted flaw is caught, and every dropped item is a failures row holding the item
    drops = {f["item_id"]: f for f in failures}
    assert {k[-4:]: f["stage"] for k, f in drops.items()} == {
        "0000": "annotate.verify.blind", "0002": "annotate.verify.visual",
        "0003": "annotate.verify.spans", "0005": "annotate.verify.duplicate",
    }
    assert all(f["attempts"] == 0 and dropped_item(f)["evidence"] for f in failures)
    assert sum(usage[f"qa_dropped_{c}"] for c in ("blind", "visual", "spans", "duplicate")) == len(failures) == 4
    qa = {a["ann_id"]: a for a in by_kind(annotations, "qa")}
    assert sorted(qa) == [f"{VIDEO_ID}_qa_{p:04d}" for p in (1, 4)]
    assert usage["qa_asked"] == 6 and usage["qa_kept"] == 2
    verdicts = {k[-4:]: json.loads(a["verdicts"]) for k, a in qa.items()}
    assert verdicts["0001"]["passed"] and verdicts["0001"]["visually_confirmed"] is True
    assert verdicts["0004"]["cot_matches_answer"] is False and verdicts["0004"]["passed"] is False
    cots = by_kind(annotations, "cot")
    assert sorted(json.loads(c["payload"])["qa_ann_id"] for c in cots) == sorted(qa)
    assert all(a["tokens_in"] > 0 and a["model"] == config.model for a in annotations)

    assert again_failures == failures
    again_run = again_usage.pop("run")
    assert usage["tokens_in"] > 0 and again_run["tokens_in"] == again_run["requests"] == 0
    assert again_run["cache_hits"] == again_usage["calls"] == usage["calls"]
    assert again_usage == usage  # this version's tokens and cost, however they were answered
    assert again == annotations  # same rows, byte for byte: nothing in them depends on the run


def test_failed_items_become_failure_rows_and_the_rest_goes_on():
    video, clips, jpegs = make_video(n_clips=4)
    jpegs[clips[3]["clip_id"]] = []  # a clip whose keyframes could not be read
    broken = clips[1]["clip_id"]
    with FakeLLMServer(faults=[Fault("schema_invalid", pattern="Clip 1 of", times=2)]) as server:
        annotations, failures, usage = VideoAnnotator.from_config(make_config(server), env={}).annotate(video, clips, jpegs)
    assert all(set(f) == FAILURE_FIELDS for f in failures)
    assert {(f["stage"], f["item_id"], f["error_class"]) for f in failures if "verify" not in f["stage"]} == {
        ("annotate.caption", broken, "ValidationError"),
        ("annotate.caption", clips[3]["clip_id"], "NoKeyframes"),
    }
    assert usage["failures"] == 1
    assert {a["clip_id"] for a in by_kind(annotations, "caption")} == {clips[0]["clip_id"], clips[2]["clip_id"]}
    assert by_kind(annotations, "summary") and by_kind(annotations, "qa")
    qa_prompt = next(b for b in server.bodies if b["response_format"]["json_schema"]["name"] == "qa_set")
    assert broken not in json.dumps(qa_prompt)  # later stages see only what succeeded


def test_summary_is_map_reduce_and_its_entity_names_reach_the_qa_prompt():
    video, clips, jpegs = make_video(n_clips=5)
    with FakeLLMServer() as server:
        annotator = VideoAnnotator.from_config(make_config(server, summary_chunk_size=2, qa_per_video=2), env={})
        annotations, failures, usage = annotator.annotate(video, clips, jpegs)
    assert [f["stage"] for f in failures] == ["annotate.verify.blind"]  # item 0, planted
    prompts = [b["messages"][1]["content"] for b in server.bodies if b["response_format"]["json_schema"]["name"] == "video_summary"]
    chunks = [p for p in prompts if p.startswith("Captions of consecutive clips")]
    reduces = [p for p in prompts if p.startswith("Partial summaries")]
    assert len(chunks) == 3 and len(reduces) == 2 + 1  # 5 captions -> 3 partials -> 2 -> 1
    assert all("red-jacket man (also: man in a red jacket)" in p for p in reduces)
    summary, = by_kind(annotations, "summary")
    assert summary["prompt_id"] == "summary_reduce"
    assert summary["evidence_spans"] == [[0.0, video["duration_s"]]]
    qa_body, = bodies_of(server, "qa_set")
    assert "- red-jacket man (also: man in a red jacket): A man wearing a red jacket." in user_text(qa_body)


def test_verdict_policies_keep_or_drop_items():
    video, clips, jpegs = make_video()
    with FakeLLMServer() as server:
        keep = make_config(server, drop_blind_answerable=False, drop_failed_spans=False, verify={"visual": False})
        annotations, failures, usage = VideoAnnotator.from_config(keep, env={}).annotate(video, clips, jpegs)
        assert not bodies_of(server, "visual_answer")
    qa = {a["ann_id"][-4:]: json.loads(a["verdicts"]) for a in by_kind(annotations, "qa")}
    assert sorted(qa) == ["0000", "0001", "0002", "0003", "0004"]
    assert qa["0000"]["blind_answerable"] is True and qa["0000"]["passed"] is False
    assert qa["0003"]["spans_on_cited_clips"] is False and qa["0003"]["passed"] is False
    assert qa["0002"]["visually_confirmed"] is None and qa["0002"]["passed"] is True
    assert [f["stage"] for f in failures] == ["annotate.verify.duplicate"]
    assert (usage["qa_dropped_spans"], usage["qa_dropped_blind"], usage["qa_dropped_visual"]) == (0, 0, 0)


def test_disabled_annotators_skip_their_calls():
    video, clips, jpegs = make_video()
    with FakeLLMServer() as server:
        config = make_config(server, cot={"enabled": False}, blind={"enabled": False}, visual={"enabled": False},
                             qa_per_video=2)
        annotations, failures, _ = VideoAnnotator.from_config(config, env={}).annotate(video, clips, jpegs)
        names = {b["response_format"]["json_schema"]["name"] for b in server.bodies}
    assert names == {"clip_caption", "video_summary", "qa_set"}
    assert not by_kind(annotations, "cot") and failures == []
    verdicts = json.loads(by_kind(annotations, "qa")[0]["verdicts"])
    assert verdicts["cot_matches_answer"] is None and verdicts["blind_answerable"] is None
    assert verdicts["visually_confirmed"] is None and verdicts["passed"]


def qa_item(**overrides) -> QAItem:
    fields = dict(question="What does he pick up?", options=["a cup", "a phone", "a key", "a book"], answer="B",
                  question_type="detail", evidence=[{"clip_id": "c1", "start_s": 3.0, "end_s": 5.0}])
    return QAItem(**{**fields, **overrides})


def test_span_checks():
    clips = {"c1": {"start_s": 2.0, "end_s": 6.0}, "c2": {"start_s": 6.0, "end_s": 9.0}}
    assert check_spans(qa_item(), 9.0, clips) == {"spans_in_video": True, "spans_on_cited_clips": True}
    outside = qa_item(evidence=[{"clip_id": "c1", "start_s": 5.0, "end_s": 12.0}])
    assert check_spans(outside, 9.0, clips)["spans_in_video"] is False
    wrong_clip = qa_item(evidence=[{"clip_id": "c2", "start_s": 3.0, "end_s": 4.0}])
    assert check_spans(wrong_clip, 9.0, clips) == {"spans_in_video": True, "spans_on_cited_clips": False}
    unknown_clip = qa_item(evidence=[{"clip_id": "c9", "start_s": 3.0, "end_s": 4.0}])
    assert check_spans(unknown_clip, 9.0, clips)["spans_on_cited_clips"] is False


@pytest.mark.parametrize("said, same", [
    ("B", True), ("(b)", True), ("B. a phone", True), ("Option B", True), ("A phone", True), ("C", False), ("a cup", False),
])
def test_cot_answer_matches_multiple_choice_by_letter(said, same):
    trace = CoTTrace(steps=[CoTStep(kind="perception", text="He lifts it.", start_s=3, end_s=4)], final_answer=said)
    assert cot_matches_answer(trace, qa_item()) is same


def test_open_answers_compare_normalised():
    open_item = qa_item(options=None, answer="Three times.")
    assert answer_key("3 TIMES", None) == answer_key("three times", None)
    assert answered_blind(BlindAnswer(answer="three  times"), open_item)
    assert not answered_blind(BlindAnswer(answer="twice"), open_item)
    assert parse_choice("A man", ["x", "y"]) is None


def test_duplicate_questions_are_found_by_normalised_text():
    items = [qa_item(question="What does he pick up?"), qa_item(question="What colour is it?"),
             qa_item(question="what does he PICK UP ?!")]
    assert unique_questions(items) == ([0, 1], [2])


def test_output_models_reject_inconsistent_answers():
    with pytest.raises(ValidationError, match="option letters"):
        qa_item(answer="E")
    with pytest.raises(ValidationError, match="evidence span ends"):
        EvidenceSpan(clip_id="c1", start_s=5.0, end_s=4.0)
    with pytest.raises(ValidationError, match="perception step"):
        CoTStep(kind="perception", text="He walks.", start_s=None, end_s=None)
    with pytest.raises(ValidationError, match="must not be empty"):
        BlindAnswer(answer="  ")


def test_endpoint_resolution_and_skip_reason():
    config = AnnotatorConfig(qa={"model": "text-model", "base_url": "http://qa:8000/v1"})
    assert not endpoint_configured(config, env={})
    assert "OPENAI_BASE_URL" in skipped_reason(config, env={})
    env = {"OPENAI_BASE_URL": "http://local:8000/v1"}
    assert endpoint_configured(config, env=env) and skipped_reason(config, env=env) is None
    caption, qa = resolve_endpoint(config, "caption", env), resolve_endpoint(config, "qa", env)
    assert (caption.base_url, caption.model) == ("http://local:8000/v1", "gpt-4o-mini")
    assert (qa.base_url, qa.model) == ("http://qa:8000/v1", "text-model")
    keyed = resolve_endpoint(config, "caption", {"OPENAI_API_KEY": "sk-secret"})
    assert keyed.api_key == "sk-secret" and "sk-secret" not in repr(keyed)
    assert "disabled" in skipped_reason(AnnotatorConfig(enabled=False), env=env)
    with pytest.raises(ValidationError):
        AnnotatorConfig(image_detail="medium")


def test_prompts_are_versioned_files():
    versions = prompt_versions()
    assert {"caption", "caption_diff", "summary_chunk", "summary_reduce", "qa", "cot", "blind"} <= set(versions)
    prompt = load_prompt("blind")
    assert (prompt.id, prompt.version) == ("blind", versions["blind"][-1])
    with pytest.raises(KeyError, match="no version 99"):
        load_prompt("blind", 99)
    with pytest.raises(KeyError):
        prompt.render(question="only this")


def test_usage_is_split_without_losing_tokens():
    from vidcorpus.annotators.client import Usage
    shares = split_usage(Usage(10, 7), 3)
    assert [s.tokens_in for s in shares] == [4, 3, 3]
    assert sum(s.tokens_out for s in shares) == 7


def test_server_counts_image_tokens_the_documented_way():
    small, large = jpeg_data_url(jpeg(0, (64, 48))), jpeg_data_url(jpeg(0, (1920, 1080)))
    assert image_tokens({"url": large, "detail": "low"}) == 85
    assert image_tokens({"url": large, "detail": "high"}) == 85 + 170 * 6  # 1365x768 -> 3x2 tiles
    assert image_tokens({"url": small, "detail": "auto"}) == 85
