"""Re-encoded clips: one forward reading of the source serves a video's clips."""

import io

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
    mp4s = list(clip_media.reencode_clips(path, Geometry(320, 240, 1.0, 0), 0, spans, keys, 25.0,
                                          load_config(None, []).clip_mp4))
    # the second span starts where the first ended; the third's key frame (2.0 s) lies past 1.6 s
    assert seeks == [0.4, 3.0]
    source = decoded(path)
    for (start, end), mp4 in zip(spans, mp4s):
        frames = decoded(io.BytesIO(mp4))
        first = round(start * 25)
        assert len(frames) == round((end - start) * 25)
        errors = [np.abs(frames[0] - source[i]).mean() for i in range(first - 2, first + 3)]
        assert int(np.argmin(errors)) == 2, f"span {start}-{end} starts on the wrong frame"
