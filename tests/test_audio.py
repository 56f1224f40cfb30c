"""Clip MP4s keep their sound, in sync with the picture, whether copied or re-encoded; a broken
audio stream costs one failures row and the clips' sound, never the video."""

from pathlib import Path

import av
import numpy as np
import pytest

from vidcorpus import ids
from vidcorpus.config import load_config
from vidcorpus.media.audio import audio_streams
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.discover import Input
from vidcorpus.pipelines.scan import scan_video
from vidcorpus.pipelines.segment import segment_video
from vidcorpus.pipelines.staging import staging_dir

FPS = 25
SCENES = [Scene(50, 1), Scene(50, 2), Scene(50, 3)]   # cuts at 2 s and 4 s
BEEPS = [0.6, 2.88, 5.2]                               # one inside each clip, not on a frame edge of the audio


def build_clips(tmp_path: Path, source: Path, *overrides: str):
    item = Input(str(source), source.stat().st_size, ids.video_id(str(source), source.stat().st_size))
    cfg = load_config(None, ["keyframes.k=1", *overrides])
    work = str(tmp_path / "work")
    scanned = scan_video(item, cfg, work)
    result = segment_video(scanned, cfg, work)
    assert result["video"] is not None, result["failures"]
    staged = Path(staging_dir(work, item.video_id))
    return result, [staged / result["files"][c["clip_id"]]["mp4"] for c in result["clips"]]


def beep_onset(path: Path) -> float | None:
    """Seconds from the clip's start to the first loud audio sample."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            loud = np.nonzero(np.abs(frame.to_ndarray()[0]) > 0.05)[0]
            if len(loud):
                return float(frame.pts * frame.time_base) + loud[0] / frame.sample_rate
    return None


def first_video_time(path: Path) -> float:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return float(frame.pts * frame.time_base)


@pytest.mark.parametrize("mode, key_at_cuts, expected", [("copy", True, "copy"), ("reencode", True, "reencode"),
                                                           ("copy", False, "reencode")])
def test_clip_sound_is_in_sync_with_its_picture(tmp_path, mode, key_at_cuts, expected):
    """The beep at a known video time sounds at that time minus the clip's start, within a
    video frame, for copied clips, re-encoded ones and the pieces the decode pass encoded."""
    source = tmp_path / "beeps.mp4"
    write_video(str(source), SCENES, fps=FPS, audio=True, beeps=BEEPS, gop=75 if not key_at_cuts else None,
                key_at_cuts=key_at_cuts)
    result, mp4s = build_clips(tmp_path, source, f"clips.mode={mode}")
    assert [round(c["start_s"], 3) for c in result["clips"]] == [0.0, 2.0, 4.0]
    assert [c["audio_mode"] for c in result["clips"]] == [expected] * 3
    assert result["failures"] == []
    for clip, mp4, beep in zip(result["clips"], mp4s, BEEPS):
        with av.open(str(mp4)) as container:
            assert [s.type for s in container.streams] == ["video", "audio"]
        heard = beep_onset(mp4) - first_video_time(mp4)
        assert heard == pytest.approx(beep - clip["start_s"], abs=1 / FPS), (clip["index"], heard)


def test_audio_off_keeps_clips_video_only_and_the_video_row_lists_its_tracks(tmp_path):
    source = tmp_path / "beeps.mp4"
    write_video(str(source), SCENES, fps=FPS, audio=True, beeps=BEEPS)
    result, mp4s = build_clips(tmp_path, source, "audio.enabled=false")
    assert result["video"]["audio_streams"] == [{"index": 0, "codec": "aac", "channels": 1, "sample_rate": 16000,
                                                 "language": None}]
    assert [c["audio_mode"] for c in result["clips"]] == [None] * 3
    for mp4 in mp4s:
        with av.open(str(mp4)) as container:
            assert [s.type for s in container.streams] == ["video"]


def test_a_video_without_sound_makes_silent_clips_and_no_failure(tmp_path):
    source = tmp_path / "mute.mp4"
    write_video(str(source), SCENES, fps=FPS)
    result, _ = build_clips(tmp_path, source)
    assert result["video"]["audio_streams"] == []
    assert [c["audio_mode"] for c in result["clips"]] == [None] * 3 and result["failures"] == []


def test_a_corrupt_audio_stream_costs_one_failures_row_not_the_video(tmp_path):
    good, bad = tmp_path / "good.mp4", tmp_path / "bad.mp4"
    write_video(str(good), SCENES, fps=FPS, audio=True, beeps=BEEPS)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    with av.open(str(good)) as container:
        for packet in container.demux(audio=0):
            if packet.size:
                data[packet.pos:packet.pos + packet.size] = rng.integers(0, 256, packet.size, np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    result, mp4s = build_clips(tmp_path, bad, "clips.mode=reencode")
    assert len(result["clips"]) == 3
    assert [(f["stage"], f["error_class"]) for f in result["failures"]] == [("audio", "AudioError")]
    assert [c["audio_mode"] for c in result["clips"]] == [None] * 3
    for mp4 in mp4s:
        with av.open(str(mp4)) as container:
            assert [s.type for s in container.streams] == ["video"]
    assert sorted(p.name for p in mp4s[0].parent.glob("*.mp4")) == sorted(p.name for p in mp4s)


def test_every_audio_stream_is_probed_with_its_language(tmp_path):
    path = str(tmp_path / "two.mkv")
    with av.open(path, "w") as out:
        for rate, language in ((48000, "eng"), (22050, "fra")):
            stream = out.add_stream("aac", rate=rate)
            stream.layout = "stereo" if rate == 48000 else "mono"
            stream.metadata["language"] = language
        for stream in out.streams.audio:
            rate, layout = stream.codec_context.sample_rate, stream.layout.name
            channels = 2 if layout == "stereo" else 1
            frame = av.AudioFrame.from_ndarray(np.zeros((channels, 1024), np.float32), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, 0
            out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    with av.open(path) as container:
        assert audio_streams(container) == [
            {"index": 0, "codec": "aac", "channels": 2, "sample_rate": 48000, "language": "eng"},
            {"index": 1, "codec": "aac", "channels": 1, "sample_rate": 22050, "language": "fra"}]
