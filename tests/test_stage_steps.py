"""Each stage's step called directly on a generated video, without Beam: scan, segment, staging,
annotate and tasks. Like a subsampler test: input in, a new result out, the input untouched."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import TINY
from llm_server import FakeLLMServer

from vidcorpus import ids, storage
from vidcorpus.annotators import VideoAnnotator
from vidcorpus.config import load_config
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.annotate import annotate_result, clip_frames, llm_config
from vidcorpus.pipelines.discover import Input
from vidcorpus.pipelines.scan import Scanned, scan_video
from vidcorpus.pipelines.segment import segment_video
from vidcorpus.pipelines.staging import RESULT, load_staged_result, result_fingerprint, stage_result, staging_dir
from vidcorpus.pipelines.tasks import make_tasks, pool_entries


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("steps") / "three.mp4"
    starts = write_video(str(path), [Scene(40, 1), Scene(40, 2), Scene(40, 3)], size=(160, 120))
    size = path.stat().st_size
    return Input(str(path), size, ids.video_id(str(path), size)), starts


def test_scan_finds_the_cuts_and_spools_candidates(video, tiny_config, tmp_path):
    item, starts = video
    scanned = scan_video(item, tiny_config, str(tmp_path))
    assert isinstance(scanned, Scanned)
    cut_times = [float(scanned.scan.times[c]) for c in scanned.scan.cuts]
    assert cut_times == pytest.approx(starts[1:], abs=0.05)
    assert len(scanned.scan.times) == 120
    assert scanned.candidates and storage.exists(scanned.spool_uri)
    assert all(len(j) > 100 for j in scanned.jpegs(scanned.candidates[:3]))


def test_scan_of_a_broken_file_is_one_failure_row(tiny_config, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 2000)
    item = Input(str(broken), 2000, "vbroken0000000000")
    result = scan_video(item, tiny_config, str(tmp_path / "work"))
    assert result["video"] is None and result["clips"] == []
    [failure] = result["failures"]
    assert (failure["uri"], failure["stage"], failure["video_id"]) == (str(broken), "probe", "vbroken0000000000")


def test_segment_makes_clips_and_files_and_stages_nothing_itself(video, tiny_config, tmp_path):
    item, starts = video
    work = str(tmp_path)
    result = segment_video(scan_video(item, tiny_config, work), tiny_config, work)
    assert [c["clip_id"] for c in result["clips"]] == [ids.clip_id(item.video_id, i) for i in range(3)]
    assert [c["start_s"] for c in result["clips"]] == pytest.approx(starts, abs=0.05)
    assert result["video"]["num_clips"] == 3 and not result["failures"]
    staged = staging_dir(work, item.video_id)
    for clip in result["clips"]:
        files = result["files"][clip["clip_id"]]
        assert storage.exists(storage.join(staged, files["mp4"]))
        assert len(files["jpg"]) == tiny_config.keyframes.k
    assert not storage.exists(storage.join(staged, RESULT))


def test_a_staged_result_is_found_again_only_under_its_fingerprint(video, tiny_config, tmp_path):
    item, _ = video
    work = str(tmp_path)
    result = segment_video(scan_video(item, tiny_config, work), tiny_config, work)
    fingerprint = result_fingerprint(tiny_config)
    stamped = stage_result(result, fingerprint, work, item.video_id)
    assert "fingerprint" not in result and stamped["fingerprint"] == fingerprint
    assert load_staged_result(work, item.video_id, fingerprint) == json.loads(json.dumps(stamped))
    assert load_staged_result(work, item.video_id, "another-config") is None


def test_annotate_returns_a_new_result_with_annotations(video, tiny_config, tmp_path):
    item, _ = video
    work = str(tmp_path)
    result = segment_video(scan_video(item, tiny_config, work), tiny_config, work)
    before = copy.deepcopy(result)
    with FakeLLMServer() as server:
        llm = llm_config(AnnotatorConfig(base_url=server.base_url, timeout_s=2.0, backoff_base_s=0.0), work)
        annotator = VideoAnnotator.from_config(llm)
        try:
            annotated = annotate_result(result, annotator, work)
        finally:
            annotator.close()
    assert result == before
    kinds = {row["kind"] for row in annotated["tables"]["annotations"]}
    assert {"caption", "summary", "qa"} <= kinds
    assert annotated["usage"]["tokens_in"] > 0
    assert annotated["clips"] == result["clips"]


def test_the_llm_sees_frames_sampled_from_the_spooled_candidates(video, tiny_config, tmp_path):
    item, _ = video
    work = str(tmp_path)
    result = segment_video(scan_video(item, tiny_config, work), tiny_config, work)
    staged = staging_dir(work, item.video_id)
    for per_s in (0.5, 8.0):  # 1.6 s clips: the 2-frame minimum, or every candidate
        frames = clip_frames(result, staged, AnnotatorConfig(frames_per_s=per_s))
        for clip in result["clips"]:
            seen, candidates = frames[clip["clip_id"]], result["files"][clip["clip_id"]]["candidates"]
            assert len(seen) == (2 if per_s == 0.5 else len(candidates)) and len(candidates) > 2
            assert all(jpeg[:2] == b"\xff\xd8" for _, jpeg in seen)
            assert all(clip["start_s"] <= t < clip["end_s"] for t, _ in seen)
    legacy = {**result, "files": {cid: {k: v for k, v in f.items() if k != "candidates"}
                                  for cid, f in result["files"].items()}}
    keyframes = clip_frames(legacy, staged, AnnotatorConfig())
    assert [t for t, _ in keyframes[result["clips"][0]["clip_id"]]] == [
        k["timestamp_s"] for k in result["clips"][0]["keyframes"]]


def test_tasks_return_a_new_result_with_sft_and_rl_rows(tmp_path):
    path = tmp_path / "five.mp4"
    write_video(str(path), [Scene(40, seed) for seed in range(1, 6)], size=(160, 120))
    item = Input(str(path), path.stat().st_size, ids.video_id(str(path), path.stat().st_size))
    cfg = load_config(TINY, ["tasks.niah.grid.haystack_s=[4.0]"])
    work = str(tmp_path / "work")
    result = segment_video(scan_video(item, cfg, work), cfg, work)
    before = copy.deepcopy(result)
    pool = sorted(pool_entries(result, cfg.tasks), key=lambda e: e["clip_id"])
    tasked = make_tasks(result, pool, cfg.tasks, list(cfg.shards.splits), work)
    assert result == before
    assert not tasked["failures"]
    families = {row["family"] for row in tasked["tables"]["rl"]}
    assert {"order", "niah"} <= families
    assert all(row["video_id"] == item.video_id for row in tasked["tables"]["sft"])
    for probe in tasked["probes"]:
        assert storage.exists(storage.join(staging_dir(work, item.video_id), probe))
