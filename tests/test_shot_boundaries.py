"""Shot boundaries from per-frame probabilities (no model needed): hard cuts against gradual
transitions measured in seconds (right under variable frame rate), the consensus merge, and
scenes planned around transitions."""

from __future__ import annotations

import numpy as np

from vidcorpus.media.scenes import outside, plan_scenes
from vidcorpus.scoring.shot_boundaries import ShotBoundaries, merge_cuts, shot_boundaries


def probabilities(n: int, peaks: dict[int, float], plateau: tuple[int, int, float] | None = None):
    single, many = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for frame, p in peaks.items():
        single[frame] = many[frame] = p
    if plateau:
        a, b, p = plateau
        many[a:b] = p
    return single, many


def test_a_one_frame_peak_is_a_hard_cut_after_it_and_a_long_plateau_is_a_transition():
    single, many = probabilities(200, {49: 0.9}, plateau=(100, 125, 0.8))
    many[97:100] = many[125:128] = 0.2  # the faint ends of the dissolve
    times = np.arange(200) / 25
    found = shot_boundaries(single, many, times, 8.0, 0.5, 0.1, 0.2)
    assert found == ShotBoundaries([50], [(97, 128)])


def test_the_gradual_test_is_in_seconds_so_it_holds_under_variable_frame_rate():
    single, many = probabilities(100, {}, plateau=(40, 44, 0.8))  # four frames
    at_25fps = np.arange(100) / 25                                 # 0.16 s: a cut
    slow_frames = np.concatenate([np.arange(40) / 25, 1.6 + np.arange(60) / 10])  # 0.4 s: a transition
    assert shot_boundaries(single, many, at_25fps, 4.0, 0.5, 0.1, 0.2).transitions == []
    assert shot_boundaries(single, many, slow_frames, 7.6, 0.5, 0.1, 0.2).transitions == [(40, 44)]


def test_a_fade_out_and_in_through_black_is_one_transition():
    single, many = probabilities(120, {})
    many[40:50], many[50:54], many[54:64] = 0.8, 0.3, 0.8  # out, black (faint), in
    found = shot_boundaries(single, many, np.arange(120) / 25, 4.8, 0.5, 0.1, 0.2)
    assert found.transitions == [(40, 64)] and found.cuts == []


def test_consensus_union_adds_content_cuts_the_model_missed_and_both_keeps_agreed_ones():
    times = np.arange(300) / 25
    model = ShotBoundaries([50, 150], [(200, 225)])
    content = [51, 100, 210, 226]  # 51 ~ 50; 210 inside the transition; 226 at its end
    assert merge_cuts(model, content, times, 0.2, "union") == ShotBoundaries([50, 100, 150], [(200, 225)])
    assert merge_cuts(model, content, times, 0.2, "both") == ShotBoundaries([50], [(200, 225)])


def test_scenes_leave_transitions_out_and_drop_slivers_between_them():
    times = np.arange(200) / 25
    gaps = [(50, 75), (80, 100)]  # 5 frames (0.2 s) between them: a sliver under min_scene_s
    assert outside(gaps, 200) == [(0, 50), (75, 80), (100, 200)]
    assert plan_scenes([150], times, 8.0, 0.5, None, gaps) == [(0, 50), (100, 150), (150, 200)]
    assert plan_scenes([150], times, 8.0, 0.5, None) == [(0, 150), (150, 200)]
    assert plan_scenes([], times, 8.0, 0.5, None, [(0, 200)]) == [(0, 200)]  # all transition: kept whole
