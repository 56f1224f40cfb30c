"""Scene detection on generated videos whose cut frames and times are known."""

import tempfile

import numpy as np
import pytest
from scenedetect.common import FrameTimecode
from scenedetect.detectors import AdaptiveDetector, ContentDetector

from vidcorpus.config import load_config
from vidcorpus.media.probe import open_container, probe
from vidcorpus.media.scenes import FastAdaptiveDetector, FastContentDetector, plan_scenes
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.scan import decode_pass
from vidcorpus.scoring.keyframes import CandidateSpool


def run_pass(path, cfg):
    size = path.stat().st_size
    with tempfile.TemporaryFile() as spool_file, open_container(str(path), size) as container:
        header = probe(container, size, cfg.probe)
        result = decode_pass(container, header, cfg, CandidateSpool(cfg.keyframes, spool_file))
    return header, result


@pytest.mark.parametrize("detector", ["content", "adaptive", "hash", "histogram"])
def test_hard_cuts_found_within_one_frame(tmp_path, detector):
    cfg = load_config(None, [f"scenes.detector={detector}"])
    path = tmp_path / "cuts.mp4"
    write_video(str(path), [Scene(30, 1), Scene(25, 2), Scene(35, 3), Scene(20, 4)], size=(160, 120))
    _, result = run_pass(path, cfg)
    scenes = plan_scenes(result.cuts, result.times, result.end_time, cfg.scenes.min_scene_s, None)
    starts = [s for s, _ in scenes]
    assert len(starts) == 4
    assert np.all(np.abs(np.array(starts) - [0, 30, 55, 90]) <= 1)


def test_fade_through_black_is_one_cut(tmp_path):
    cfg = load_config(None, ["scenes.detector=threshold"])
    path = tmp_path / "fade.mp4"
    write_video(str(path), [Scene(40, 5, fade_out=12), Scene(40, 6, fade_in=12)], size=(160, 120))
    _, result = run_pass(path, cfg)
    scenes = plan_scenes(result.cuts, result.times, result.end_time, cfg.scenes.min_scene_s, None)
    assert len(scenes) == 2
    assert 28 <= scenes[1][0] <= 52   # somewhere in the black between the two fades


def test_timestamps_follow_presentation_time_under_vfr(tmp_path):
    cfg = load_config()
    path = tmp_path / "vfr.mkv"
    starts = write_video(str(path), [Scene(30, 6), Scene(30, 7)], fps=30, vfr=True, size=(160, 120))
    _, result = run_pass(path, cfg)
    # every third interval is doubled, so frame 30 is at 40/30 s, not 30/30 s
    assert starts[1] == pytest.approx(40 / 30, abs=1e-3)
    cut = result.cuts[0]
    assert abs(cut - 30) <= 1
    assert result.times[30] == pytest.approx(starts[1], abs=2e-3)
    assert result.times[-1] == pytest.approx(78 / 30, abs=2e-3)   # 59 intervals, 19 of them doubled
    assert result.end_time == pytest.approx(79 / 30, abs=2e-3)


def test_short_scenes_merge_and_long_scenes_split():
    times = np.arange(100) / 10.0          # 10 fps, 10 s
    scenes = plan_scenes([5, 50], times, 10.0, min_scene_s=1.0, max_scene_s=None)
    assert scenes == [(0, 50), (50, 100)]  # the 0.5 s opening merged into its successor
    scenes = plan_scenes([40, 42, 90], times, 10.0, min_scene_s=0.5, max_scene_s=None)
    assert scenes == [(0, 42), (42, 90), (90, 100)]  # the 0.2 s scene folds into its predecessor
    split = plan_scenes([], times, 10.0, min_scene_s=0.5, max_scene_s=3.0)
    assert split == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert all((b - a) / 10.0 <= 3.0 for a, b in split)


@pytest.mark.parametrize("library, ours, kwargs", [
    (ContentDetector, FastContentDetector, {}),
    (ContentDetector, FastContentDetector, {"weights": ContentDetector.Components(1.0, 0.5, 1.0, 0.25)}),
    (AdaptiveDetector, FastAdaptiveDetector, {}),
])
def test_fast_detectors_score_and_cut_exactly_as_the_library(library, ours, kwargs):
    """Our detectors only sum differences faster: every frame score and every cut must match."""
    rng = np.random.default_rng(3)
    scenes = [rng.integers(0, 256, (90, 160, 3), np.uint8) for _ in range(4)]
    frames = [np.clip(scenes[i // 20].astype(int) + rng.integers(-8, 8, (90, 160, 3)), 0, 255).astype(np.uint8)
              for i in range(80)]
    reference, fast = library(min_scene_len=5, **kwargs), ours(min_scene_len=5, **kwargs)
    cuts: dict = {reference: [], fast: []}
    for i, frame in enumerate(frames):
        for detector in (reference, fast):
            cuts[detector] += [tc.frame_num for tc in detector.process_frame(FrameTimecode(i, 25.0), frame)]
        assert fast._frame_score == reference._frame_score
    for detector in (reference, fast):
        cuts[detector] += [tc.frame_num for tc in detector.post_process(FrameTimecode(len(frames) - 1, 25.0))]
    assert cuts[fast] == cuts[reference]
    assert len(cuts[reference]) == 3
