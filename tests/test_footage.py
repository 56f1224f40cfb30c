"""Near-duplicate footage across videos: re-encoded, rotated, cropped and excerpted copies of
one video are found from the decode pass's dHash signature, grouped, and land in one split."""

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from tests.conftest import TINY
from vidcorpus.config import load_config
from vidcorpus.ids import split_of
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.groups import apply_footage_group, footage_entry, footage_groups
from vidcorpus.pipelines.scan import Input, scan_video
from vidcorpus.scoring.footage import dhash, group_footage

FPS = 10
SCENES = [Scene(50, seed) for seed in (21, 22, 23, 24, 25, 26)]  # 30 s


def transcode(source, target, transform=lambda rgb: rgb, size=None, rotation=0, window=(0.0, 1e9), crf=30):
    """Write `source`'s frames in [window) through `transform`, as another encode."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = None
        for frame in inp.decode(video=0):
            if not window[0] <= frame.time < window[1]:
                continue
            picture = np.ascontiguousarray(transform(frame.to_ndarray(format="rgb24")))
            if stream is None:
                stream = out.add_stream("libx264", rate=Fraction(FPS))
                stream.height, stream.width = (size or picture.shape[:2])
                stream.pix_fmt = "yuv420p"
                stream.codec_context.options = {"crf": str(crf), "preset": "ultrafast"}
                if rotation:
                    stream.set_display_rotation(-rotation)
            image = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if size:
                image = image.reformat(width=size[1], height=size[0])
            out.mux(stream.encode(image))
        out.mux(stream.encode(None))


_FIELD = np.random.default_rng(5).random((12, 16, 3))
_FRAME = iter(range(10**6))


def blobs(rgb):
    """A smooth random picture drifting frame by frame (ignores `rgb`, keeps its size)."""
    shift = next(_FRAME) // 3
    field = np.roll(_FIELD, shift, axis=1)
    return (cv2.resize(field, rgb.shape[1::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def crop(rgb, share=0.08):
    h, w = rgb.shape[:2]
    dy, dx = int(h * share), int(w * share)
    return rgb[dy:h - dy, dx:w - dx]


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    original = root / "original.mp4"
    write_video(str(original), SCENES, fps=FPS, size=(320, 240))
    paths = {"original": original}
    paths["reencoded"] = root / "reencoded.mp4"
    transcode(original, paths["reencoded"], size=(180, 240), crf=38)
    paths["rotated"] = root / "rotated.mp4"  # pixels turned, display matrix turns them back
    transcode(original, paths["rotated"], transform=lambda rgb: np.rot90(rgb, k=1), rotation=90)
    paths["cropped"] = root / "cropped.mp4"
    transcode(original, paths["cropped"], transform=crop, size=(240, 320))
    paths["excerpt"] = root / "excerpt.mp4"
    transcode(original, paths["excerpt"], window=(12.0, 22.0))
    paths["unrelated"] = root / "unrelated.mp4"  # other footage: drifting smooth blobs
    transcode(original, paths["unrelated"], transform=blobs)
    paths["black"] = root / "black.mp4"  # flat frames carry no signature
    transcode(original, paths["black"], transform=lambda rgb: np.zeros_like(rgb))
    return paths


@pytest.fixture(scope="module")
def results(copies, tmp_path_factory):
    cfg = load_config(TINY)
    work = str(tmp_path_factory.mktemp("work"))
    out = {}
    for name, path in copies.items():
        scanned = scan_video(Input(str(path), path.stat().st_size, f"v{name}"), cfg, work)
        out[name] = {"video": {"video_id": f"v{name}", "duration_s": scanned.scan.end_time, "split": "?"},
                     "clips": [{"clip_id": f"v{name}_0000", "split": "?"}], "signature": scanned.scan.signature}
    return out


def test_copies_are_grouped_with_their_original(results):
    matches = group_footage(entry for r in results.values() for entry in footage_entry(r))
    members = {"voriginal", "vreencoded", "vrotated", "vcropped", "vexcerpt"}
    assert set(matches) == members  # not the unrelated video, nor the black one
    (head,) = {m.group for m in matches.values()}
    full_length = {v for v in members if results[v[1:]]["video"]["duration_s"] > 29.0}
    assert head == min(full_length)  # the longest (ties: smallest id); never the excerpt
    assert matches[head].dup_of is None and matches[head].overlap_s == 0.0
    assert all(matches[v].dup_of == head for v in members - {head})
    assert matches["vexcerpt"].overlap_s == pytest.approx(10.0, abs=1.5)
    assert all(matches[v].overlap_s >= 15.0 for v in members - {head, "vexcerpt"})


def test_duplicate_footage_lands_in_one_split(results):
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    members = ["voriginal", "vreencoded", "vrotated", "vcropped", "vexcerpt"]
    assert len({split_of(v, fractions) for v in members}) > 1  # by id alone they would straddle splits
    groups = footage_groups([e for r in results.values() for e in footage_entry(r)], fractions)
    assigned = {v: apply_footage_group(results[v[1:]], groups) for v in members}
    splits = {r["video"]["split"] for r in assigned.values()} | {c["split"] for r in assigned.values()
                                                               for c in r["clips"]}
    assert len(splits) == 1
    assert assigned["vexcerpt"]["video"]["dup_of"] in members
    assert apply_footage_group(results["unrelated"], groups) is results["unrelated"]


def test_flat_frames_have_no_hash_and_rotation_is_undone():
    assert not any(dhash(np.full((60, 80), 17, np.uint8)))
    rng = np.random.default_rng(0)
    picture = (rng.random((60, 80)) * 255).astype(np.uint8)
    assert dhash(np.rot90(picture, k=1), rotation=90) == dhash(picture)
