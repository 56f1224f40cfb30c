"""End-to-end builds on the Beam DirectRunner over generated good and bad inputs."""

import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import tree_digest
from PIL import Image

from vidcorpus.pipelines import segment
from vidcorpus.pipelines.build import build


@pytest.fixture(scope="module")
def corpus(videos, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    summary = build(str(next(iter(videos.values())).parent), str(out), tiny_config)
    return out, summary


def table(out, name):
    return pq.read_table(out / ("failures" if name == "failures" else f"data/{name}")).to_pylist()


def test_every_input_is_accounted_for(corpus, videos):
    out, summary = corpus
    in_corpus = {v["uri"] for v in table(out, "videos")}
    failed = {f["uri"]: f for f in table(out, "failures")}
    assert {str(p) for p in videos.values()} == in_corpus | set(failed)
    assert not in_corpus & set(failed)
    assert in_corpus == {str(videos[n]) for n in ("cuts.mp4", "fade.mp4", "vfr.mkv", "rotated.mp4")}
    expected = {"empty.mp4": "EmptyFile", "notavideo.mp4": "NotAVideo", "audio_only.mp4": "NoVideoStream",
                "truncated.mkv": "TruncatedVideo"}
    for name, error in expected.items():
        row = failed[str(videos[name])]
        assert row["error_class"] == error, row
        assert row["stage"] in ("probe", "decode") and row["message"]
    assert summary.counts["videos"] == 4 and summary.counts["inputs_failed"] == 4


def test_clips_hold_known_cuts_and_keyframes_inside(corpus, videos):
    out, _ = corpus
    vid = next(v for v in table(out, "videos") if v["uri"].endswith("cuts.mp4"))
    clips = sorted((c for c in table(out, "clips") if c["video_id"] == vid["video_id"]), key=lambda c: c["index"])
    assert [c["start_frame"] for c in clips] == [0, 30, 55]
    assert clips[1]["start_s"] == pytest.approx(30 / 25)
    assert clips[-1]["end_s"] == pytest.approx(vid["duration_s"]) == pytest.approx(90 / 25)
    for clip in clips:
        assert clip["clip_id"] == f"{vid['video_id']}_{clip['index']:04d}"
        assert 1 <= len(clip["keyframes"]) <= 2
        assert all(clip["start_s"] <= k["timestamp_s"] < clip["end_s"] for k in clip["keyframes"])
        assert clip["clip_mode"] in ("copy", "reencode")


def test_shards_stream_with_webdataset(corpus):
    out, _ = corpus
    clips = {c["clip_id"]: c for c in table(out, "clips")}
    shards = sorted(str(p) for p in (out / "shards").glob("train-*.tar"))
    assert len(shards) == -(-len(clips) // 4)   # tiny recipe: 4 samples per shard
    seen = {}
    for sample in wds.WebDataset(shards, shardshuffle=False):
        meta = json.loads(sample["json"])
        seen[sample["__key__"]] = meta
        assert meta == clips[sample["__key__"]]
        assert sample["mp4"][4:8] == b"ftyp"
        for i in range(len(meta["keyframes"])):
            Image.open(__import__("io").BytesIO(sample[f"{i}.jpg"])).verify()
    assert set(seen) == set(clips)


def test_rotated_video_comes_out_upright(corpus, videos):
    out, _ = corpus
    vid = next(v for v in table(out, "videos") if v["uri"].endswith("rotated.mp4"))
    assert vid["rotation"] == 90
    assert (vid["display_width"], vid["display_height"]) == (96, 160)
    clip = next(c for c in table(out, "clips") if c["video_id"] == vid["video_id"])
    with tarfile.open(out / "shards" / clip["shard"]) as tar:
        jpg = Image.open(tar.extractfile(f"{clip['clip_id']}.0.jpg"))
        assert jpg.width < jpg.height
        import av
        with av.open(tar.extractfile(f"{clip['clip_id']}.mp4")) as clip_file:
            frame = next(clip_file.decode(video=0))
            assert frame.width < frame.height and frame.rotation == 0


def test_rotation_turns_the_picture_clockwise(tmp_path, tiny_config):
    """A bar along the top of the coded picture must end up on the right after a 90° turn."""
    import av

    from vidcorpus.media.decode import geometry_of, upright
    from vidcorpus.media.synth import Scene, write_video
    path = tmp_path / "r.mp4"
    write_video(str(path), [Scene(3, 1)], size=(64, 48), rotation=90)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        g = geometry_of(frame, 1.0)
        coded = frame.to_ndarray(format="rgb24").astype(int)
        shown = upright(frame, g, (64, 48)).astype(int)
    assert shown.shape == (64, 48, 3)
    assert np.abs(shown[0, :] - coded[::-1, 0][:, :]).mean() < 12   # top row = first column read bottom-up


def test_two_builds_are_byte_identical(corpus, videos, tiny_config, tmp_path):
    out, summary = corpus
    again = build(str(next(iter(videos.values())).parent), str(tmp_path / "again"), tiny_config)
    assert tree_digest(out) == tree_digest(tmp_path / "again")
    assert again.dataset_hash == summary.dataset_hash
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    # every file is listed, the card and report too (the seal lists them)
    assert listed == {k: v for k, v in tree_digest(out).items() if k != "manifest.json"}


def test_a_record_that_breaks_its_schema_goes_to_failures(videos, tiny_config, tmp_path, monkeypatch):
    real = segment.clip_row

    def broken(*args, **kwargs):
        row, jpegs = real(*args, **kwargs)
        if row["index"] == 1:
            row["end_s"] = row["start_s"] - 1.0     # ends before it starts
            row["duration_s"] = -1.0
        return row, jpegs

    monkeypatch.setattr(segment, "clip_row", broken)
    summary = build(str(videos["cuts.mp4"]), str(tmp_path / "out"), tiny_config)
    failures = table(tmp_path / "out", "failures")
    assert len(failures) == 1 and failures[0]["stage"] == "validate"
    assert failures[0]["item_id"].endswith("_0001") and "start_s" in failures[0]["message"]
    assert [c["index"] for c in table(tmp_path / "out", "clips")] == [0, 2]
    assert summary.counts["clips"] == 2


def test_identical_files_keep_one_copy_and_report_the_other(videos, tiny_config, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = videos["cuts.mp4"].read_bytes()
    (folder / "a.mp4").write_bytes(data)
    (folder / "b.mp4").write_bytes(data)
    (folder / "README.txt").write_text("not an input")
    summary = build(str(folder), str(tmp_path / "out"), tiny_config)
    failures = table(tmp_path / "out", "failures")
    assert [f["error_class"] for f in failures] == ["DuplicateContent"]
    assert failures[0]["uri"].endswith("b.mp4")
    assert summary.skipped and summary.skipped[0].endswith("README.txt")


def test_inputs_beyond_the_probe_limits_are_rejected_as_absurd(videos, tmp_path):
    from conftest import TINY

    from vidcorpus.config import load_config
    for override, words in (("probe.max_pixels=1000", "max_pixels"), ("probe.max_duration_s=1", "max_duration_s"),
                            ("probe.max_file_bytes=100", "max_file_bytes")):
        out = tmp_path / override.split("=")[0]
        build(str(videos["cuts.mp4"]), str(out), load_config(TINY, [override]))
        failures = table(out, "failures")
        assert [(f["stage"], f["error_class"]) for f in failures] == [("probe", "AbsurdInput")], override
        assert words in failures[0]["message"]
