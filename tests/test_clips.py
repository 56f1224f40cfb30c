"""Re-encoded clips: one forward reading of the source serves a video's clips."""

import av
import numpy as np

from vidcorpus.config import load_config
from vidcorpus.media import clips as clip_media
from vidcorpus.media.decode import Geometry
from vidcorpus.media.synth import Scene, write_video


def decoded(source) -> list[np.ndarray]:
    with av.open(source) as c:
        return [f.to_ndarray(format="gray").astype(int) for f in c.decode(video=0)]


def test_adjacent_spans_read_on_and_distant_ones_seek(tmp_path, monkeypatch):
    path = str(tmp_path / "gop.mp4")
    write_video(path, [Scene(150, 5)], fps=25, size=(320, 240), gop=50, key_at_cuts=False)
    with av.open(path) as c:
        keys = [i / 25 for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys == [0.0, 2.0, 4.0]
    seeks = []
    real_seek = clip_media.SourceFrames.seek
    monkeypatch.setattr(clip_media.SourceFrames, "seek", lambda self, t: seeks.append(t) or real_seek(self, t))

    spans = [(0.4, 1.2), (1.2, 1.6), (3.0, 3.4)]
    mp4s = [str(tmp_path / f"clip{i}.mp4") for i in range(len(spans))]
    clip_media.reencode_clips(path, Geometry(320, 240, 1.0, 0), 0, spans, keys, 25.0, load_config(None, []).clip_mp4,
                              mp4s)
    # the second span starts where the first ended; the third's key frame (2.0 s) lies past 1.6 s
    assert seeks == [0.4, 3.0]
    source = decoded(path)
    for (start, end), mp4 in zip(spans, mp4s):
        frames = decoded(mp4)
        first = round(start * 25)
        assert len(frames) == round((end - start) * 25)
        errors = [np.abs(frames[0] - source[i]).mean() for i in range(first - 2, first + 3)]
        assert int(np.argmin(errors)) == 2, f"span {start}-{end} starts on the wrong frame"


def test_reencoded_clips_come_from_the_decode_pass_and_match_a_second_reading(tmp_path, monkeypatch):
    """Cuts off key frames force re-encoding; the pass encodes those clips as it decodes them, and
    each holds exactly its frames (the same as a second reading). Only the first clip, which
    starts on a key frame before any cut fell off one, is read again."""
    from vidcorpus import ids
    from vidcorpus.pipelines.discover import Input
    from vidcorpus.pipelines.scan import scan_video
    from vidcorpus.pipelines.segment import segment_video
    from vidcorpus.pipelines.staging import staging_dir

    path = tmp_path / "cuts.mp4"
    write_video(str(path), [Scene(30, 1), Scene(40, 2), Scene(30, 3), Scene(40, 4), Scene(30, 5)], fps=25,
                size=(320, 240), gop=50, key_at_cuts=False)   # key frames 0, 50, 100, 150
    item = Input(str(path), path.stat().st_size, ids.video_id(str(path), path.stat().st_size))
    cfg = load_config(None, ["keyframes.k=1"])
    second_readings = []
    real = clip_media.SourceFrames.seek
    monkeypatch.setattr(clip_media.SourceFrames, "seek", lambda self, t: second_readings.append(t) or real(self, t))
    scanned = scan_video(item, cfg, str(tmp_path / "work"))
    assert [(p.start, p.end) for p in scanned.pieces] == [(30, 70), (70, 100), (100, 140), (140, 170)]
    result = segment_video(scanned, cfg, str(tmp_path / "work"))
    assert [c["clip_mode"] for c in result["clips"]] == ["reencode"] * 5
    assert second_readings == [0.0]
    staged = staging_dir(str(tmp_path / "work"), item.video_id)
    assert sorted(p.name for p in (tmp_path / "work" / "videos" / item.video_id).glob("*.mp4")) == sorted(
        f["mp4"] for f in result["files"].values())
    in_pass = [decoded(f"{staged}/{result['files'][c['clip_id']]['mp4']}") for c in result["clips"][1:]]
    again = [str(tmp_path / f"again{i}.mp4") for i in range(4)]
    clip_media.reencode_clips(str(path), scanned.scan.geometry, scanned.scan.origin_pts,
                              [(c["start_s"], c["end_s"]) for c in result["clips"][1:]], [0.0, 2.0, 4.0, 6.0], 25.0,
                              cfg.clip_mp4, again)
    assert [len(frames) for frames in in_pass] == [40, 30, 40, 30]
    for frames, other in zip(in_pass, again):
        assert np.array_equal(np.array(frames), np.array(decoded(other)))
