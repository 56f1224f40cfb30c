"""Written NIAH probes hold their needles exactly where their records say.

The haystack and foreign videos are generated here: every frame is one flat colour whose red
and green channels encode the frame's index and whose blue channel tells the video apart,
so each decoded probe frame says which source frame it came from.
"""

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from vidcorpus.config.tasks import TasksConfig
from vidcorpus.media.needle import box_pixels, draw_needle, needle_layout
from vidcorpus.tasks import render
from vidcorpus.tasks.build import build_foreign_pool
from vidcorpus.tasks.niah import NEEDLE_WORDS, plan_niah_probes
from vidcorpus.tasks.render import cover_frame, render_probe

FPS, WIDTH, HEIGHT = 10, 160, 120
HAYSTACK_BLUE, FOREIGN_BLUE = 40, 220
CLIP_S = 5.0


def frame_colour(index: int, blue: int) -> tuple[int, int, int]:
    return (index % 16) * 16 + 8, (index // 16) * 16 + 8, blue


def write_video(path, frames: int, blue: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "10"}
        for index in range(frames):
            rgb = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            rgb[:] = frame_colour(index, blue)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def source_of(rgb: np.ndarray) -> tuple[int, int]:
    """(frame index, blue) read from a frame's top-left corner, outside any needle box."""
    r, g, b = rgb[:16, :16].reshape(-1, 3).mean(axis=0)
    return int(round((g - 8) / 16)) * 16 + int(round((r - 8) / 16)), int(round(b))


def decode(data: bytes) -> list[tuple[float, np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        return [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def shows_box(rgb: np.ndarray, box) -> bool:
    """A white box with dark text: mostly near-white pixels, some near-black ones."""
    x0, y0, x1, y1 = box_pixels(box, rgb.shape[1], rgb.shape[0])
    crop = rgb[y0 + 2:y1 - 2, x0 + 2:x1 - 2].astype(int)
    white = (crop.min(axis=2) > 200).mean()
    black = (crop.max(axis=2) < 70).mean()
    return white > 0.4 and black > 0.02


def best_matching_word(rgb: np.ndarray, overlay, candidates) -> str:
    """The candidate whose freshly drawn needle looks most like the decoded box."""
    x0, y0, x1, y1 = box_pixels(overlay.box, WIDTH, HEIGHT)

    def distance(text):
        ideal = draw_needle(rgb, text, overlay.box, overlay.font_size)
        return np.abs(ideal[y0:y1, x0:x1].astype(int) - rgb[y0:y1, x0:x1].astype(int)).mean()

    return min(candidates, key=distance)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("videos"))


def make_corpus(root):
    """A 20 s haystack video and a 10 s foreign one with their 5 s clips."""
    videos, clips = [], []
    for video_id, frames, blue in (("vhaystack0000001", 200, HAYSTACK_BLUE), ("vforeign00000001", 100, FOREIGN_BLUE)):
        write_video(root / f"{video_id}.mp4", frames, blue)
        videos.append({"video_id": video_id, "split": "train", "uri": str(root / f"{video_id}.mp4"), "fps": float(FPS),
                       "width": WIDTH, "height": HEIGHT, "duration_s": frames / FPS})
        for index in range(int(frames / FPS / CLIP_S)):
            clips.append({"clip_id": f"{video_id}_{index:04d}", "video_id": video_id, "index": index,
                          "start_s": index * CLIP_S, "end_s": (index + 1) * CLIP_S, "duration_s": CLIP_S})
    return videos, clips


def make_config(kinds, haystack_s=(12.0,), depths=(0.0, 0.5, 1.0), probes=3):
    return TasksConfig.model_validate({
        "niah": {"grid": {"haystack_s": list(haystack_s), "depths": list(depths), "kinds": list(kinds)},
                 "probes_per_video": probes, "foreign_pool_fraction": 1.0, "crf": 18, "max_fps": FPS},
    })


def plan(corpus, config):
    videos, clips = corpus
    pool = build_foreign_pool({v["video_id"]: v for v in videos}, clips, [], config)
    haystack = videos[0]
    return plan_niah_probes(haystack, [c for c in clips if c["video_id"] == haystack["video_id"]], config, pool)


def expected_source(spec, time_s):
    """The (video_id, source frame index) the edit list puts at probe time `time_s`."""
    segment = next(s for s in spec.edit.segments if s.start_s - 1e-6 <= time_s < s.end_s - 1e-6)
    return segment, int(np.floor((segment.source_start_s + time_s - segment.start_s) * FPS + 1e-6))


def test_needle_layout_is_centred_large_and_inside_the_frame():
    for text, width, height in (("7", 160, 120), ("UMBRELLA", 160, 120), ("SQUIRREL", 96, 160), ("4821", 1280, 720)):
        layout = needle_layout(text, width, height)
        x0, y0, x1, y1 = layout.box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert (x0 + x1) / 2 == pytest.approx(0.5, abs=0.01) and (y0 + y1) / 2 == pytest.approx(0.5, abs=0.01)
        assert y1 - y0 > 0.2 or x1 - x0 > 0.8  # as large as the frame allows: tall, or as wide as fits
        assert layout.font_size * height >= 8


def test_draw_needle_changes_only_its_box_and_keeps_the_input():
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    layout = needle_layout("ZEBRA", WIDTH, HEIGHT)
    drawn = draw_needle(frame, "ZEBRA", layout.box, layout.font_size)
    x0, y0, x1, y1 = box_pixels(layout.box, WIDTH, HEIGHT)
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[y0:y1, x0:x1] = False
    assert (drawn[outside] == 90).all()
    assert shows_box(drawn, layout.box) and not shows_box(frame, layout.box)
    assert (frame == 90).all()
    assert not np.array_equal(drawn, draw_needle(frame, "TIGER", layout.box, layout.font_size))


def test_cover_fills_the_frame_and_keeps_the_centre():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :50] = (255, 0, 0)
    image[:, 50:150] = (0, 255, 0)
    image[:, 150:] = (0, 0, 255)
    out = cover_frame(av.VideoFrame.from_ndarray(image, format="rgb24"), 1.0, 100, 100)
    assert out.shape == (100, 100, 3)
    assert (out[:, 2:-2] == (0, 255, 0)).all()


def assert_needle_where_recorded(spec, frames, fps: float = FPS) -> None:
    """A rendered probe's frames: one per 1 / fps (the probe's rate), the needle boxed exactly
    during its span, every haystack pixel from the source frame the record names."""
    (needle,) = spec.needles
    overlay = next(s.overlay for s in spec.edit.segments if s.overlay)
    assert len(frames) == round(spec.haystack_s * fps)
    assert [t for t, _ in frames] == pytest.approx([k / fps for k in range(len(frames))])
    others = [w for w in NEEDLE_WORDS[:12] if w != needle.text] + ["12", "4821"]
    for time_s, rgb in frames:
        inside = needle.span.start_s - 1e-6 <= time_s < needle.span.end_s - 1e-6
        assert shows_box(rgb, overlay.box) == inside, (spec.probe_id, time_s)
        if inside:
            assert best_matching_word(rgb, overlay, [needle.text, *others]) == needle.text
        _, source_index = expected_source(spec, time_s)
        index, blue = source_of(rgb)  # haystack pixels come from the right source time
        assert index == source_index and abs(blue - HAYSTACK_BLUE) < 12


def test_rendered_needle_is_on_screen_exactly_during_its_span(corpus):
    config = make_config(["rendered"])
    specs = plan(corpus, config)
    assert sorted(s.depth for s in specs) == [0.0, 0.5, 1.0]
    for spec in specs:
        (needle,) = spec.needles
        assert_needle_where_recorded(spec, decode(render_probe(spec, config.niah)))
        start_frame = round(needle.span.start_s * FPS)
        assert needle.span.start_s == pytest.approx(spec.depth * (spec.haystack_s - needle.span.duration_s), abs=0.051)
        assert start_frame / FPS == pytest.approx(needle.span.start_s)


def test_foreign_clip_appears_exactly_in_its_span(corpus):
    config = make_config(["foreign"])
    specs = plan(corpus, config)
    assert {s.kind for s in specs} == {"foreign"} and len(specs) == 3
    for spec in specs:
        (needle,) = spec.needles
        assert needle.video_id == "vforeign00000001" and 1.0 <= needle.span.duration_s <= 4.0
        assert spec.edit.duration_s == pytest.approx(spec.haystack_s)  # trimmed haystack: the length says nothing
        frames = decode(render_probe(spec, config.niah))
        assert len(frames) == round(spec.edit.duration_s * FPS)
        for time_s, rgb in frames:
            inside = needle.span.start_s - 1e-6 <= time_s < needle.span.end_s - 1e-6
            segment, source_index = expected_source(spec, time_s)
            index, blue = source_of(rgb)
            assert abs(blue - (FOREIGN_BLUE if inside else HAYSTACK_BLUE)) < 12, (spec.probe_id, time_s)
            assert index == source_index and segment.role == ("needle" if inside else "haystack")


def test_multi_needle_words_appear_in_their_spans_in_order(corpus):
    config = make_config(["multi"], haystack_s=(16.0,), probes=1)
    niah = config.niah.model_copy(update={"needle_s": (1.0, 1.5), "multi_counts": (2, 5)})  # five needles fit in 16 s
    config = config.model_copy(update={"niah": niah})
    (spec,) = plan(corpus, config)
    words = [n.text for n in spec.needles]
    assert 2 <= len(words) <= 5 and len(set(words)) == len(words)
    starts = [n.span.start_s for n in spec.needles]
    assert starts == sorted(starts)
    overlays = [s.overlay for s in spec.edit.segments if s.overlay]
    frames = decode(render_probe(spec, config.niah))
    seen = []
    for time_s, rgb in frames:
        showing = [n for n in spec.needles if n.span.start_s - 1e-6 <= time_s < n.span.end_s - 1e-6]
        if not showing:
            assert not any(shows_box(rgb, o.box) for o in overlays), time_s
            continue
        (needle,) = showing
        overlay = overlays[spec.needles.index(needle)]
        assert shows_box(rgb, overlay.box), time_s
        word = best_matching_word(rgb, overlay, words)
        if not seen or seen[-1] != word:
            seen.append(word)
    assert seen == words


def test_probes_of_one_video_share_one_haystack_encode_and_reencode_only_near_their_needles(corpus, tmp_path,
                                                                                          monkeypatch):
    config = make_config(["rendered"], haystack_s=(8.0, 12.0), depths=(0.0, 0.5, 1.0), probes=3)
    specs = plan(corpus, config)
    tracks, fresh = [], []
    real_track, real_encode = render._encode_track, render._encode
    monkeypatch.setattr(render, "_encode_track", lambda track, *a: tracks.append(track) or real_track(track, *a))

    def encode(frames, path, *args):
        count = real_encode(frames, path, *args)
        fresh.append(count if "fresh" in path else 0)
        return count

    monkeypatch.setattr(render, "_encode", encode)
    paths = [str(tmp_path / f"{spec.probe_id}.mp4") for spec in specs]
    render.write_probes(specs, paths, config.niah)
    assert len(tracks) == 1  # one haystack encode serves the three probes
    frames = sum(round(spec.edit.duration_s * FPS) for spec in specs)
    needles = sum(round(n.span.duration_s * FPS) for spec in specs for n in spec.needles)
    fresh_frames = sum(fresh)
    gop = render.probe_gop(FPS)
    assert needles <= fresh_frames <= needles + 2 * gop * len(specs) < frames
    for spec, path in zip(specs, paths):
        with open(path, "rb") as f:
            assert_needle_where_recorded(spec, decode(f.read()))


def test_written_probes_are_reproducible_byte_for_byte(corpus):
    config = make_config(["rendered", "foreign"], probes=2)
    first, again = plan(corpus, config), plan((corpus[0], list(reversed(corpus[1]))), config)
    assert [s.model_dump_json() for s in first] == [s.model_dump_json() for s in again]
    assert render_probe(first[0], config.niah) == render_probe(again[0], config.niah)


def test_sources_can_come_from_file_objects_which_are_closed_after_use(corpus):
    config = make_config(["foreign"], depths=(0.5,), probes=1)
    (spec,) = plan(corpus, config)
    handles = []

    def opener(uri):
        handles.append(open(uri, "rb"))
        return handles[-1]

    assert render_probe(spec, config.niah, opener=opener) == render_probe(spec, config.niah)
    assert {h.name for h in handles} == {seg.uri for seg in spec.edit.segments}  # haystack and foreign source
    assert all(h.closed for h in handles)


def test_probes_of_rotated_videos_are_upright(tmp_path):
    """A phone video stored sideways with a 90-degree display rotation comes out portrait."""
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.set_display_rotation(-90)  # players turn it 90 degrees clockwise
        coded = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        coded[:, : WIDTH // 2] = (255, 0, 0)  # left half red: the top once upright
        coded[:, WIDTH // 2:] = (0, 0, 255)
        for index in range(60):
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = {"video_id": "vportrait0000001", "split": "train", "uri": str(path), "fps": float(FPS), "width": WIDTH, "height": HEIGHT,
             "display_width": HEIGHT, "display_height": WIDTH}
    clips = [{"clip_id": "vportrait0000001_0000", "video_id": video["video_id"], "index": 0,
              "start_s": 0.0, "end_s": 6.0}]
    config = make_config(["rendered"], haystack_s=(5.0,), depths=(0.5,), probes=1)
    (spec,) = plan_niah_probes(video, clips, config)
    assert (spec.edit.width, spec.edit.height) == (HEIGHT, WIDTH)
    for _, rgb in decode(render_probe(spec, config.niah))[::7]:
        assert rgb.shape == (WIDTH, HEIGHT, 3)
        top, bottom = rgb[: WIDTH // 4].reshape(-1, 3).mean(0), rgb[-WIDTH // 4:].reshape(-1, 3).mean(0)
        assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
