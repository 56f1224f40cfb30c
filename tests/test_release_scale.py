"""The scale-out release: small index entries, a layout computed from them alone, each file
written from its own slices, the same bytes on any runner and worker count, training buckets."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import TASK_OVERRIDES, TINY, tree_digest
from vidcorpus.config import load_config
from vidcorpus.pipelines import layout as layout_module
from vidcorpus.pipelines.build import build
from vidcorpus.pipelines.index import stage_release_rows, unit_files, unit_table
from vidcorpus.pipelines.layout import ReleaseLayout, clip_bucket
from vidcorpus.pipelines.staging import RESULT, stage_result, stage_tables, staged_table_uri, video_result
from vidcorpus.release.files import ReleaseFiles
from vidcorpus.release.ipc import read_ipc


def entry(video_id: str, clip_bytes: list[int], split: str = "train", **rows: int) -> dict:
    return {"unit": f"videos/{video_id}", "order": video_id, "split": split, "duration_s": 10.0,
            "clip_bytes": clip_bytes, "rows": {"videos": 1, "clips": len(clip_bytes), **rows}}


def files_of(layout: ReleaseLayout) -> dict[str, list[tuple]]:
    grouped: dict[str, list[tuple]] = {}
    for key, piece in layout.slices():
        grouped.setdefault(key[2], []).append(piece)
    return {path: sorted(pieces) for path, pieces in sorted(grouped.items())}


def test_shards_close_at_max_samples_and_max_bytes_in_video_order_whatever_the_index_order():
    entries = [entry("v2", [60, 60]), entry("v1", [10, 10, 10]), entry("v3", [5], split="val")]
    layouts = [ReleaseLayout(order, max_samples=3, max_bytes=100, tables=("videos", "clips", "failures"))
               for order in (entries, entries[::-1])]
    files = [files_of(layout) for layout in layouts]
    assert files[0] == files[1]
    shards = {path: [(unit, start, stop) for _, unit, start, stop, _, _ in pieces]
              for path, pieces in files[0].items() if path.startswith("shards/")}
    assert shards == {   # v1's three clips fill a shard; v2's two clips pass 100 bytes together
        "shards/train-000000.tar": [("videos/v1", 0, 3)],
        "shards/train-000001.tar": [("videos/v2", 0, 1)],
        "shards/train-000002.tar": [("videos/v2", 1, 2)],
        "shards/val-000000.tar": [("videos/v3", 0, 1)],
    }
    clip_part = files[0]["data/clips/part-00000.parquet"]
    assert [(piece[1], piece[5]) for piece in clip_part] == [
        ("videos/v1", (("train-000000.tar", 3),)),
        ("videos/v2", (("train-000001.tar", 1), ("train-000002.tar", 1))),
        ("videos/v3", (("val-000000.tar", 1),))]
    assert files[0]["failures/part-00000.parquet"] == [(("", 0), None, 0, 0, False, ())]   # empty, still written
    summary = layouts[0].summary()["counts"]
    assert (summary["shards"], summary["clips"], summary["videos"], summary["failures"]) == (4, 6, 3, 0)


def test_parquet_parts_cut_rows_across_units_at_the_part_size(monkeypatch):
    monkeypatch.setattr(layout_module, "ROWS_PER_FILE", 4)
    entries = [entry(f"v{i}", [1] * 3) for i in range(3)]   # 9 clips: parts of 4, 4, 1
    files = files_of(ReleaseLayout(entries, 1000, 1 << 30, ("clips",)))
    parts = {path: [(unit, start, stop) for _, unit, start, stop, _, _ in pieces]
             for path, pieces in files.items() if path.startswith("data/")}
    assert parts == {
        "data/clips/part-00000.parquet": [("videos/v0", 0, 3), ("videos/v1", 0, 1)],
        "data/clips/part-00001.parquet": [("videos/v1", 1, 3), ("videos/v2", 0, 2)],
        "data/clips/part-00002.parquet": [("videos/v2", 2, 3)],
    }


def test_parts_close_at_a_size_in_memory_so_wide_rows_stay_small_whatever_the_corpus():
    """40,000 frame rows of 512-d float32 embeddings (about 2 KiB a row, 80 MiB in all) make parts
    of at most 32 MiB; narrow rows of a small table stay in one part, as before."""
    row = 4 * 512 + 64
    frames = [dict(entry(f"v{i}", [1]), rows={"frames": 10_000}, bytes={"frames": 10_000 * row}) for i in range(4)]
    parts = {}
    for key, piece in ReleaseLayout(frames, 1000, 1 << 30, ("frames",)).slices():
        parts[key[2]] = parts.get(key[2], 0) + piece[3] - piece[2]
    assert len(parts) == 3 and sum(parts.values()) == 40_000
    assert all(rows * row <= layout_module.PART_BYTES for rows in parts.values())
    small = [dict(entry(f"v{i}", [1] * 3), bytes={"clips": 3 * 500}) for i in range(3)]
    assert {k[2] for k, _ in ReleaseLayout(small, 1000, 1 << 30, ("clips",)).slices() if k[0] == "part"} == {
        "data/clips/part-00000.parquet"}


def test_failures_are_ordered_by_uri_and_task_samples_fill_their_own_shards():
    entries = [dict(entry("v1", [1]), uri="z.mp4", failures_by_stage={"tasks": 1}),
               {"unit": "inputs/abc", "order": "", "uri": "a.mp4", "rows": {"failures": 1}, "input_failed": True,
                "failures_by_stage": {"probe": 1}}]
    entries[0]["rows"].update(failures=1, sft=3)
    layout = ReleaseLayout(entries, max_samples=2, max_bytes=1 << 30, tables=("clips", "sft", "failures"))
    files = files_of(layout)
    assert [piece[1] for piece in files["failures/part-00000.parquet"]] == ["inputs/abc", "videos/v1"]
    assert [(piece[2], piece[3]) for piece in files["shards/sft-train-000000.tar"]] == [(0, 2)]
    assert [(piece[2], piece[3]) for piece in files["shards/sft-train-000001.tar"]] == [(2, 3)]
    counts = layout.summary()["counts"]
    assert (counts["inputs_failed"], counts["failures_by_stage"], counts["shards"]) == (1, {"probe": 1, "tasks": 1}, 3)


def test_a_result_leaves_its_rows_in_its_folder_and_a_small_index_entry(tmp_path):
    work = str(tmp_path)
    failure = {"uri": "in/a.mp4", "video_id": "v1", "item_id": None, "stage": "probe", "error_class": "E",
               "message": "m", "attempts": 1}
    clips = [{"clip_id": f"v1_{i:04d}", "video_id": "v1", "split": "train", "duration_s": 1.0} for i in (1, 0)]
    result = video_result(None, clips, files={"v1_0000": {"jpg": ["a.jpg"], "bytes": 900, "candidates": [1, 2]}},
                          failures=[failure])
    index = stage_release_rows(result, work, ("clips", "failures"), lambda video, clip: "b")
    assert index["rows"] == {"clips": 2, "failures": 1} and index["input_failed"]
    assert index["clip_bytes"] == [900, 0] and index["buckets"] == ["b", "b"]
    assert unit_table(work, index["unit"], "clips", False).column("clip_id").to_pylist() == ["v1_0000", "v1_0001"]
    assert unit_files(work, index["unit"]) == [{"jpg": ["a.jpg"]}, {}]   # no frame refs: only what ships
    assert unit_table(work, index["unit"], "failures", False).column("stage").to_pylist() == ["probe"]
    small = stage_release_rows({**result, "clips": [], "files": {}}, work, ("clips", "failures"))
    assert len(json.dumps(small)) < 200


def test_frame_embeddings_are_staged_as_float32_arrays_never_json(tmp_path):
    work = str(tmp_path)
    frames = [{"clip_id": "v1_0000", "video_id": "v1", "timestamp_s": t, "frame_index": i, "brightness": 1.0,
               "sharpness": 2.0, "embedding": np.full(512, 0.25, np.float32).tolist(), "scores": []}
              for i, t in enumerate((0.5, 1.0))]
    result = stage_tables(video_result(tables={"frames": frames}), work, "v1", ("frames",))
    stage_result(result, "fp", work, "v1")
    staged = result["staged_tables"]["frames"]
    assert (staged["rows"], staged["dims"]) == (2, [512]) and staged["bytes"] >= 2 * 512 * 4
    assert "frames" not in result["tables"]
    table = read_ipc(staged_table_uri(work, "v1", "frames"))
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    assert np.asarray(table.column("embedding").to_pylist(), np.float32).shape == (2, 512)
    assert "embedding" not in (tmp_path / "videos" / "v1" / RESULT).read_text()


def test_clip_buckets_name_resolution_aspect_and_duration():
    video = {"display_width": 1920, "display_height": 1080}
    assert clip_bucket(video, {"duration_s": 4.0}, ["resolution", "aspect", "duration"]) == "1080p_16x9_5s"
    assert clip_bucket({"display_width": 120, "display_height": 160}, {"duration_s": 99.0},
                       ["aspect", "duration", "resolution"]) == "3x4_long_144p"
    assert re.fullmatch(r"[a-z0-9_]+", clip_bucket(video, {"duration_s": 0.1}, ["resolution", "duration"]))


@pytest.fixture(scope="module")
def in_process(videos, tmp_path_factory):
    cfg = load_config(TINY, [*TASK_OVERRIDES, "llm.enabled=false"])
    out = tmp_path_factory.mktemp("in-process")
    return build(str(videos["cuts.mp4"].parent), str(out), cfg), out


def test_in_process_and_four_worker_processes_write_the_same_release(videos, in_process, tmp_path):
    cfg = load_config(TINY, [*TASK_OVERRIDES, "llm.enabled=false", "runner.mode=multi_processing",
                             "runner.workers=4"])
    summary = build(str(videos["cuts.mp4"].parent), str(tmp_path), cfg)
    reference, out = in_process
    assert summary.counts["shards"] > 2 and summary.counts["sft"] > 0
    assert summary.dataset_hash == reference.dataset_hash
    data = {k: v for k, v in tree_digest(tmp_path).items() if k.startswith(("data/", "shards/", "failures/", "probes/"))}
    assert data == {k: v for k, v in tree_digest(out).items() if k.startswith(("data/", "shards/", "failures/", "probes/"))}


def test_bucketed_shards_carry_the_bucket_in_their_name_and_the_card(videos, in_process, tmp_path):
    cfg = load_config(TINY, [*TASK_OVERRIDES, "llm.enabled=false", "shards.bucket_by=[resolution, aspect]"])
    summary = build(str(videos["cuts.mp4"].parent), str(tmp_path), cfg)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    clip_shards = ReleaseFiles(str(tmp_path)).shards("clips", "train")
    assert clip_shards and all(re.fullmatch(r"shards/train-\d+p_\d+x\d+-\d{6}\.tar", p) for p in clip_shards)
    assert sum(manifest["buckets"].values()) == summary.counts["clips"] == in_process[0].counts["clips"]
    card = (tmp_path / "README.md").read_text()
    assert all(bucket in card for bucket in manifest["buckets"])
    members = [json.loads(b) for p in clip_shards for name, b in _members(tmp_path / p) if name.endswith(".json")]
    assert sorted(m["clip_id"] for m in members) == sorted(_clip_ids(in_process[1]))
    assert all(m["shard"] in {p.split("/")[-1] for p in clip_shards} for m in members)


def _members(path):
    from vidcorpus.release.webdataset import read_shard
    return list(read_shard(str(path)))


def _clip_ids(root) -> list[str]:
    return ReleaseFiles(str(root)).table("clips", ["clip_id"]).column("clip_id").to_pylist()
