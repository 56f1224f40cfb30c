"""Needle quality gates on decoded pixels: boxes read against what they cover, no box over text,
no foreign needle from a black second, and every kept probe records what was measured."""

import io
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.media.needle import box_pixels, needle_font
from vidcorpus.media.synth import scene_pattern
from vidcorpus.tasks.build import build_foreign_pool
from vidcorpus.tasks.niah import plan_niah_probes
from vidcorpus.tasks.quality import _ring, contrast_ratio, gate_probes, relative_luminance
from vidcorpus.tasks.render import render_probe

FPS, WIDTH, HEIGHT, SECONDS, CLIP_S = 10, 160, 120, 24, 4.0


def textured(i):
    return np.roll(scene_pattern(3, WIDTH, HEIGHT), 2 * i, axis=1)


def textured_other(i):
    return np.roll(scene_pattern(4, WIDTH, HEIGHT), -3 * i, axis=0)


def white(i):
    noise = np.random.default_rng(i).integers(0, 6, (HEIGHT, WIDTH, 1))
    ramp = np.linspace(0, 8, WIDTH)[None, :, None]
    return np.clip(244 + noise + ramp - 4 + (i % 7), 0, 255).astype(np.uint8).repeat(3, axis=2)


def slides(i):
    return _slide(i // 50)


@lru_cache(maxsize=None)
def _slide(number):
    image = Image.new("RGB", (WIDTH, HEIGHT), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for line in range(9):
        draw.text((6, 4 + 13 * line), f"Lecture {number} point {line}: word soup", fill=(0, 0, 0),
                  font=needle_font(11))
    return np.asarray(image)


def dark(i):
    return (np.random.default_rng(i).integers(0, 7, (HEIGHT, WIDTH, 3))).astype(np.uint8)


def write(path, picture):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "12"}
        for index in range(SECONDS * FPS):
            frame = av.VideoFrame.from_ndarray(picture(index), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    records = {}
    for name, picture in (("textured", textured), ("other", textured_other), ("white", white),
                          ("slides", slides), ("dark", dark)):
        write(root / f"{name}.mp4", picture)
        video_id = f"v{name}"
        clips = [{"clip_id": f"{video_id}_{i:04d}", "video_id": video_id, "index": i, "start_s": i * CLIP_S,
                  "end_s": (i + 1) * CLIP_S, "duration_s": CLIP_S} for i in range(int(SECONDS / CLIP_S))]
        records[name] = ({"video_id": video_id, "split": "train", "uri": str(root / f"{name}.mp4"), "fps": float(FPS), "width": WIDTH,
                          "height": HEIGHT, "duration_s": float(SECONDS), "split": "train"}, clips)
    return records


def config(kinds, probes=3):
    return TasksConfig.model_validate({
        "niah": {"grid": {"haystack_s": [20.0], "depths": [0.1, 0.5, 0.9], "kinds": kinds}, "multi_counts": [1, 3],
                 "probes_per_video": probes, "foreign_pool_fraction": 1.0, "crf": 16},
    })


def probes(corpus, haystack, kinds, pool_from=()):
    cfg = config(kinds)
    video, clips = corpus[haystack]
    videos = {corpus[n][0]["video_id"]: corpus[n][0] for n in pool_from}
    pool = build_foreign_pool(videos, [c for n in pool_from for c in corpus[n][1]], [], cfg)
    planned = plan_niah_probes(video, clips, cfg, pool)
    assert planned
    return planned, *gate_probes(planned, cfg.niah.gates), cfg


def decoded(data):
    with av.open(io.BytesIO(data)) as container:
        return [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


@pytest.mark.parametrize("haystack", ["textured", "white"])
def test_every_rendered_needle_passes_its_contrast_floor_when_decoded(corpus, haystack):
    planned, kept, rejected, cfg = probes(corpus, haystack, ["rendered", "multi"])
    assert kept and not rejected
    floor = cfg.niah.gates.min_box_contrast
    for spec in kept:
        assert spec.quality["contrast"] >= floor
        overlays = [(s.start_s, s.end_s, s.overlay) for s in spec.edit.segments if s.overlay]
        if haystack == "white":
            assert all(o.bg != (255, 255, 255) for _, _, o in overlays)  # no white box on white
        for time_s, rgb in decoded(render_probe(spec, cfg.niah)):
            showing = [o for start, end, o in overlays if start - 1e-6 <= time_s < end - 1e-6]
            for overlay in showing:
                x0, y0, x1, y1 = box_pixels(overlay.box, WIDTH, HEIGHT)
                inside = rgb[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3)
                fill = float(np.median(relative_luminance(inside)))
                around = float(relative_luminance(rgb[_ring((x0, y0, x1, y1), WIDTH, HEIGHT)]).mean())
                assert contrast_ratio(fill, around) >= floor, (spec.probe_id, time_s)


def test_boxes_over_text_are_rejected(corpus):
    planned, kept, rejected, _ = probes(corpus, "slides", ["rendered"])
    assert not kept and set(rejected.values()) == {"text_under_box"} and len(rejected) == len(planned)


def test_foreign_needles_from_black_footage_are_rejected(corpus):
    planned, kept, rejected, _ = probes(corpus, "textured", ["foreign"], pool_from=["dark"])
    assert not kept and set(rejected.values()) == {"needle_brightness"}
    planned, kept, rejected, _ = probes(corpus, "textured", ["foreign"], pool_from=["other"])
    assert kept and not rejected
    for spec in kept:
        assert spec.quality["contrast"] == spec.quality["needle_contrast"] >= 12.0
        assert spec.quality["needle_brightness"] >= 24.0 and spec.quality["haystack_motion"] > 0.2


def test_a_black_haystack_hides_nothing(corpus):
    planned, kept, rejected, _ = probes(corpus, "dark", ["foreign"], pool_from=["other"])
    assert not kept and set(rejected.values()) == {"haystack_brightness"}
