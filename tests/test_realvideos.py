"""Opt-in: the build over real files with awkward encodings (set VIDCORPUS_REALVIDEOS to a folder)."""

import tarfile

import pyarrow.parquet as pq
import pytest
from conftest import realvideos_dir
from PIL import Image

from vidcorpus.pipelines.build import build
from vidcorpus.pipelines.discover import discover

pytestmark = pytest.mark.skipif(realvideos_dir() is None, reason="VIDCORPUS_REALVIDEOS not set")


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory, tiny_config):
    folder = realvideos_dir()
    out = tmp_path_factory.mktemp("real")
    build(folder, str(out), tiny_config)
    return folder, out


def test_every_real_file_ends_in_clips_or_failures(real_corpus, tiny_config):
    folder, out = real_corpus
    inputs, _ = discover(folder, tiny_config.input)
    videos = pq.read_table(out / "data" / "videos").to_pylist()
    failures = pq.read_table(out / "failures").to_pylist()
    assert {v["uri"] for v in videos} | {f["uri"] for f in failures} == set(inputs)
    corrupt = [f for f in failures if f["uri"].endswith("corrupted.mp4")]
    assert corrupt and corrupt[0]["stage"] == "decode"


def test_rotated_real_videos_are_upright(real_corpus):
    _, out = real_corpus
    videos = {v["uri"].rsplit("/", 1)[-1]: v for v in pq.read_table(out / "data" / "videos").to_pylist()}
    clips = pq.read_table(out / "data" / "clips").to_pylist()
    for name in ("video_90.mov", "issue-134-rotate.mp4"):
        v = videos[name]
        assert v["width"] > v["height"] and v["rotation"] == 90   # stored landscape, shown portrait
        assert v["display_height"] > v["display_width"]
        clip = next(c for c in clips if c["video_id"] == v["video_id"])
        with tarfile.open(out / "shards" / clip["shard"]) as tar:
            assert Image.open(tar.extractfile(f"{clip['clip_id']}.0.jpg")).height > \
                Image.open(tar.extractfile(f"{clip['clip_id']}.0.jpg")).width
