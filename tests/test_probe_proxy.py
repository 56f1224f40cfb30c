"""Probe proxies: the decode pass encodes a video's probe-size frames once, and written probes
are spliced from them without decoding the source again, showing what the source would."""

from pathlib import Path

import av
import pytest
from test_needle import FPS, assert_needle_where_recorded, decode, make_config, make_corpus, plan, source_of

from vidcorpus.config import load_config
from vidcorpus.config.tasks import TasksConfig
from vidcorpus.media.decode import Geometry
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import build
from vidcorpus.tasks import render
from vidcorpus.tasks.proxy import ProxyWriter, proxy_name

PROBE_FPS = 4.0  # below the generated videos' 10 fps, as the default 8 is below most sources'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("videos"))


def write_proxy(uri: str, directory, niah) -> str:
    """The proxy of a generated video, fed frame by frame as the decode pass feeds it."""
    with av.open(uri) as container:
        stream = container.streams.video[0]
        header = {"sample_aspect_ratio": 1.0}
        writer = ProxyWriter(str(directory), header, niah)
        last = 0.0
        for frame in container.decode(stream):
            last = float(frame.time)
            writer.push(last, frame, Geometry(frame.width, frame.height, 1.0, 0))
        writer.finish(last + 1 / FPS)
    return str(directory / proxy_name(PROBE_FPS, frame.width, frame.height, niah))


def proxy_config(kinds) -> TasksConfig:
    config = make_config(kinds, haystack_s=(8.0, 12.0), depths=(0.0, 0.5, 1.0), probes=3)
    return config.model_copy(update={"niah": config.niah.model_copy(update={"max_fps": PROBE_FPS})})


def test_proxy_frame_j_is_the_source_frame_shown_at_j_over_fps(corpus, tmp_path):
    videos, _ = corpus
    path = write_proxy(videos[0]["uri"], tmp_path, proxy_config(["rendered"]).niah)
    frames = decode(Path(path).read_bytes())
    assert len(frames) == round(videos[0]["duration_s"] * PROBE_FPS)
    with av.open(path) as container:  # one-second closed GOPs from frame 0: spliceable anywhere on a second
        keys = [i for i, packet in enumerate(container.demux(video=0)) if packet.size and packet.is_keyframe]
    assert keys == list(range(0, len(frames), int(PROBE_FPS)))
    for j, (time_s, rgb) in enumerate(frames):
        assert time_s == pytest.approx(j / PROBE_FPS)
        assert source_of(rgb)[0] == int(j / PROBE_FPS * FPS + 1e-6)


@pytest.mark.parametrize("kinds", [["rendered"], ["multi"], ["foreign"]])
def test_probes_spliced_from_the_proxy_never_read_their_own_source(corpus, tmp_path, monkeypatch, kinds):
    videos, _ = corpus
    config = proxy_config(kinds)
    if kinds == ["multi"]:
        config = config.model_copy(update={"niah": config.niah.model_copy(update={"multi_counts": (2, 3), "needle_s": (1.0, 1.5)})})
    proxy = write_proxy(videos[0]["uri"], tmp_path, config.niah)
    specs = plan(corpus, config)
    assert specs and all(spec.edit.fps == PROBE_FPS for spec in specs)
    opened = []

    def opener(uri):
        opened.append(uri)
        return uri

    monkeypatch.setattr(render, "_encode_track", lambda *a: pytest.fail("a source track was encoded"))
    paths = [str(tmp_path / f"{spec.probe_id}.mp4") for spec in specs]
    render.write_probes(specs, paths, config.niah, opener=opener, proxies={videos[0]["uri"]: proxy})
    assert videos[0]["uri"] not in opened  # the haystack's source is never decoded again
    for spec, path in zip(specs, paths):
        frames = decode(Path(path).read_bytes())
        if kinds == ["rendered"]:
            assert_needle_where_recorded(spec, frames, fps=PROBE_FPS)
            continue
        assert len(frames) == round(spec.haystack_s * PROBE_FPS)
        for k, (time_s, rgb) in enumerate(frames):
            segment = next(s for s in spec.edit.segments if s.start_s - 1e-6 <= time_s < s.end_s - 1e-6)
            if segment.overlay is None:  # every plain frame comes from the source frame the record names
                expected = int((segment.source_start_s + time_s - segment.start_s) * FPS + 1e-6)
                index, blue = source_of(rgb)
                assert index == expected and abs(blue - (40 if segment.role == "haystack" else 220)) < 12


def test_proxies_are_made_only_where_probes_can_use_them():
    header = {"header_duration_s": 120.0, "header_fps": 25.0}
    default = TasksConfig()
    assert ProxyWriter.for_video("d", header, default) is not None
    too_short = {**header, "header_duration_s": 20.0}  # no haystack fits
    too_long = {**header, "header_duration_s": 3 * 300.0 + 1}  # its probes cover a small part
    slow = {**header, "header_fps": 9.0}  # the probe rate would be the measured rate, unknown yet
    unknown = {**header, "header_duration_s": None}
    for case in (too_short, too_long, slow, unknown):
        assert ProxyWriter.for_video("d", case, default) is None
    reference = default.model_copy(update={"media_mode": "reference"})
    assert ProxyWriter.for_video("d", header, reference) is None


def test_a_build_splices_its_probes_from_the_proxy_and_falls_back_without_it(tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(str(videos / "long.mp4"), [Scene(25 * 5, seed=i) for i in range(8)], fps=25, size=(320, 240))
    sets = ["runner.progress=false", "clip.enabled=false", "llm.enabled=false", "clips.mode=off",
            "tasks.niah.grid.haystack_s=[30]", "tasks.niah.gates.enabled=false"]
    tracks = []
    real_track = render._encode_track
    monkeypatch.setattr(render, "_encode_track", lambda track, *a: tracks.append(track) or real_track(track, *a))
    first = build(str(videos), str(tmp_path / "out"), load_config(None, sets))
    assert first.counts["failures"] == 0 and tracks == []
    staged = next((tmp_path / "out" / ".work" / "videos").iterdir())
    assert len(list(staged.glob("probe-proxy-*.mp4"))) == 1
    probes = sorted((tmp_path / "out" / "probes").glob("*.mp4"))
    assert probes
    for probe in probes:
        assert len(decode(probe.read_bytes())) == 30 * 8  # 30 s at the default 8 fps
    card = (tmp_path / "out" / "README.md").read_text()  # the card says what the probes are
    assert (f"The {len(probes)} NIAH probes in `probes/` are H.264 MP4s (yuv420p, no audio) at the source's rate, "
            "at most 8 fps, at most 640 px on the longest side, x264 crf 23 preset `superfast`") in card
    # Without a proxy (an earlier run's scan, another probe size) probes read the source, and
    # show the same frames.
    monkeypatch.setattr(ProxyWriter, "for_video", classmethod(lambda cls, *a: None))
    again = build(str(videos), str(tmp_path / "out2"), load_config(None, sets))
    assert again.counts["failures"] == 0 and tracks
    for probe in probes:
        spliced = decode(probe.read_bytes())
        from_source = decode((tmp_path / "out2" / "probes" / probe.name).read_bytes())
        assert len(spliced) == len(from_source)
        assert max(abs(a.astype(int) - b.astype(int)).mean() for (_, a), (_, b) in zip(spliced, from_source)) < 3
