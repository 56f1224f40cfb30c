"""Keyframe selection, scene stitching and duplicate groups on embeddings
whose right answer is known by construction."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from vidcorpus.config import load_config
from vidcorpus.config.clip import ClipConfig
from vidcorpus.pipelines.segment import clip_spans
from vidcorpus.scoring.duplicates import clip_embedding, duplicate_group_ids, duplicate_groups
from vidcorpus.scoring.selection import (
    select_diverse_keyframes,
    select_keyframes_by_embedding,
    select_query_keyframes,
)
from vidcorpus.scoring.stitching import (
    frames_in_span,
    is_transition,
    plan_scenes,
    stitch_scenes,
    summarize_scene,
)

DIM = 8


def axis(i: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[i] = 1.0
    return vector


def blend(a: np.ndarray, b: np.ndarray, cos_to_a: float) -> np.ndarray:
    """Unit vector with the given cosine to `a`, tilted towards the orthogonal `b`."""
    return (cos_to_a * a + math.sqrt(1.0 - cos_to_a**2) * b).astype(np.float32)


# --- diverse keyframes -----------------------------------------------------------------


def test_diverse_picks_first_frame_of_each_distinct_shot():
    embeddings = np.stack([axis(0)] * 4 + [axis(1)] * 3 + [axis(2)] * 3)
    timestamps = np.arange(10, dtype=float)
    choices = select_diverse_keyframes(timestamps, embeddings, k=8, threshold=0.9)
    assert [c.position for c in choices] == [0, 4, 7]
    assert all(c.mode == "diverse" for c in choices)
    assert [c.score for c in choices] == pytest.approx([1.0, 1.0, 1.0])


def test_diverse_static_clip_gives_one_keyframe():
    embeddings = np.stack([axis(3)] * 6)
    choices = select_diverse_keyframes(np.arange(6.0), embeddings, k=4, threshold=0.9)
    assert [c.position for c in choices] == [0]


def test_diverse_cap_keeps_the_most_novel_in_time_order():
    a, b = axis(0), axis(1)
    half_new = blend(a, b, 0.5)  # novelty 0.5 against a
    c = blend(half_new, axis(2), 0.0)  # orthogonal to half_new: novelty 1.0
    embeddings = np.stack([a, half_new, c])
    choices = select_diverse_keyframes(np.array([0.0, 1.0, 2.0]), embeddings, k=2, threshold=0.9)
    assert [c.position for c in choices] == [0, 2]
    assert [c.score for c in choices] == pytest.approx([1.0, 1.0])


def test_diverse_reads_frames_in_time_order_and_reports_input_positions():
    embeddings = np.stack([axis(1), axis(0), axis(0)])
    timestamps = np.array([2.0, 0.0, 1.0])  # the new shot is the last in time
    choices = select_diverse_keyframes(timestamps, embeddings, k=4, threshold=0.9)
    assert [(c.position, c.timestamp_s) for c in choices] == [(1, 0.0), (0, 2.0)]


# --- query keyframes -------------------------------------------------------------------


def query_clip():
    """20 frames at 1 fps; frames 5-7 match the prompt strongly, frame 15 moderately."""
    relevance = np.zeros(20)
    relevance[[5, 6, 7, 15]] = [0.9, 0.95, 0.9, 0.7]
    embeddings = np.stack([blend(axis(0), axis(1 + i % 7), r) for i, r in enumerate(relevance)])
    return np.arange(20, dtype=float), embeddings, axis(0)[None, :]


def test_query_spreads_picks_over_the_clip():
    timestamps, embeddings, text = query_clip()
    choices = select_query_keyframes(timestamps, embeddings, text, k=2, coverage_weight=0.5)
    assert [c.position for c in choices] == [6, 15]
    assert [c.score for c in choices] == pytest.approx([0.95, 0.7], abs=1e-5)
    assert all(c.mode == "query" for c in choices)


def test_query_without_coverage_is_plain_top_k_relevance():
    timestamps, embeddings, text = query_clip()
    choices = select_query_keyframes(timestamps, embeddings, text, k=3, coverage_weight=0.0)
    assert [c.position for c in choices] == [5, 6, 7]


def test_query_uses_best_matching_prompt_and_returns_all_frames_when_k_exceeds_them():
    embeddings = np.stack([axis(0), axis(2), axis(1), axis(3)])
    texts = np.stack([axis(1), axis(3)])
    top = select_query_keyframes(np.arange(4.0), embeddings, texts, k=2, coverage_weight=0.0)
    assert [c.position for c in top] == [2, 3]
    everything = select_query_keyframes(np.arange(4.0), embeddings, texts, k=10)
    assert [c.position for c in everything] == [0, 1, 2, 3]


def test_dispatch_and_argument_checks():
    timestamps, embeddings, text = query_clip()
    by_mode = select_keyframes_by_embedding("query", timestamps, embeddings, 2, text_embeddings=text)
    assert [c.position for c in by_mode] == [6, 15]
    with pytest.raises(ValueError, match="text_embeddings"):
        select_keyframes_by_embedding("query", timestamps, embeddings, 2)
    with pytest.raises(ValueError, match="k must be"):
        select_diverse_keyframes(timestamps, embeddings, k=0, threshold=0.9)
    with pytest.raises(ValueError, match="one timestamp per"):
        select_diverse_keyframes(timestamps[:3], embeddings, k=2, threshold=0.9)
    assert select_diverse_keyframes(np.zeros(0), np.zeros((0, DIM)), k=2, threshold=0.9) == []


# --- stitching, transitions, splits ---------------------------------------------------


def five_scene_video():
    """20 sampled frames at 1 fps over five detector scenes.

    Scenes 0 and 1 show the same event (over-split); scene 2 shows another; scene 3 is a
    cross-fade from scene 2's content to scene 4's, so it must never glue 2 and 4 together.
    """
    a, b, c = axis(0), axis(1), axis(2)
    frames = [a] * 8 + [b] * 4 + [b, c] + [c] * 6
    bounds = [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 14.0), (14.0, 20.0)]
    return bounds, np.arange(20, dtype=float), np.stack(frames)


def spans(scenes):
    return [(s.start_s, s.end_s, s.source_scenes, s.is_transition) for s in scenes]


def test_plan_marks_transition_and_stitches_only_around_it():
    bounds, timestamps, embeddings = five_scene_video()
    planned = plan_scenes(
        bounds, timestamps, embeddings, stitch_threshold=0.82, transition_threshold=0.5
    )
    assert spans(planned) == [
        (0.0, 8.0, (0, 1), False),
        (8.0, 12.0, (2,), False),
        (12.0, 14.0, (3,), True),
        (14.0, 20.0, (4,), False),
    ]


def test_plan_drops_transitions_when_asked():
    bounds, timestamps, embeddings = five_scene_video()
    planned = plan_scenes(
        bounds, timestamps, embeddings,
        stitch_threshold=0.82, transition_threshold=0.5, transition_action="drop",
    )
    assert spans(planned) == [
        (0.0, 8.0, (0, 1), False),
        (8.0, 12.0, (2,), False),
        (14.0, 20.0, (4,), False),
    ]


def test_without_transition_check_the_fade_would_chain_three_scenes():
    bounds, timestamps, embeddings = five_scene_video()
    planned = plan_scenes(
        bounds, timestamps, embeddings, stitch_threshold=0.82, transition_threshold=-1.0
    )
    assert [s.source_scenes for s in planned] == [(0, 1), (2, 3, 4)]


def test_stitched_events_are_split_on_frames_as_without_clip():
    bounds, timestamps, embeddings = five_scene_video()
    scan = SimpleNamespace(cuts=[int(start * 10) for start, _ in bounds[1:]], times=np.arange(200) / 10.0,
                           end_time=20.0, transitions=[])   # a 10 fps source; its candidates are the 1 fps samples
    scanned = SimpleNamespace(scan=scan, candidates=[SimpleNamespace(t=t) for t in timestamps])
    cfg = load_config(None, ["scenes.max_scene_s=3"])
    spans = clip_spans(scanned, cfg, SimpleNamespace(matrix=embeddings))
    assert spans[:3] == [(0, 27, False), (27, 54, False), (54, 80, False)]   # the stitched 0-8 s event
    assert all(b - a <= 30 for a, b, _ in spans) and spans[-1][1] == 200
    assert all(a == prev_end for (a, _, _), (_, prev_end, _) in zip(spans[1:], spans))


def test_stitched_mean_embedding_is_exact_mean_of_all_frames():
    timestamps = np.arange(6, dtype=float)
    embeddings = np.stack([axis(0), axis(0), blend(axis(0), axis(1), 0.9), axis(0), axis(0), axis(0)])
    scenes = [summarize_scene(0.0, 3.0, timestamps, embeddings, (0,)),
              summarize_scene(3.0, 6.0, timestamps, embeddings, (1,))]
    merged = stitch_scenes(scenes, threshold=0.8)
    assert len(merged) == 1
    np.testing.assert_allclose(merged[0].mean_embedding, clip_embedding(embeddings), atol=1e-6)


def test_gaps_and_frameless_scenes_are_never_stitched():
    timestamps = np.arange(10, dtype=float)
    embeddings = np.stack([axis(0)] * 10)
    gap = [summarize_scene(0.0, 4.0, timestamps, embeddings, (0,)),
           summarize_scene(5.0, 9.0, timestamps, embeddings, (1,))]
    assert len(stitch_scenes(gap, threshold=0.5)) == 2
    frameless = summarize_scene(4.2, 4.8, timestamps, embeddings, (1,))
    assert frameless.num_frames == 0 and frameless.mean_embedding is None
    around = [summarize_scene(0.0, 4.2, timestamps, embeddings, (0,)), frameless,
              summarize_scene(4.8, 10.0, timestamps, embeddings, (2,))]
    assert [s.source_scenes for s in stitch_scenes(around, threshold=0.5)] == [(0,), (1,), (2,)]


def test_boundary_frames_sit_inside_the_margin_and_single_frames_are_no_transition():
    timestamps = np.array([0.0, 0.5, 9.5, 10.0])
    embeddings = np.stack([axis(0), axis(1), axis(2), axis(3)])
    scene = summarize_scene(0.0, 10.0, timestamps, embeddings, boundary_margin=0.05)
    np.testing.assert_array_equal(scene.first_embedding, axis(1))  # nearest to 0.5 s
    np.testing.assert_array_equal(scene.last_embedding, axis(2))  # nearest to 9.5 s; 10.0 is outside
    assert list(frames_in_span(timestamps, 0.0, 10.0)) == [0, 1, 2]
    single = summarize_scene(0.0, 0.4, timestamps, embeddings)
    assert single.num_frames == 1 and not is_transition(single, threshold=0.99)


# --- clip embeddings and duplicates ----------------------------------------------------


def test_clip_embedding_is_renormalised_mean_of_unit_frames():
    np.testing.assert_allclose(
        clip_embedding(np.stack([2 * axis(0), axis(1)])), (axis(0) + axis(1)) / math.sqrt(2), atol=1e-6
    )
    with pytest.raises(ValueError):
        clip_embedding(np.zeros((0, DIM)))


def test_duplicate_groups_point_at_the_earliest_member():
    a, c = axis(0), axis(1)
    embeddings = [a, blend(a, axis(2), 0.99), c, blend(c, axis(3), 0.97), None, axis(4)]
    assert duplicate_groups(embeddings, threshold=0.95) == [0, 0, 2, 2, 4, 5]
    ids = [f"vabc_{i:04d}" for i in range(6)]
    assert duplicate_group_ids(ids, embeddings, 0.95) == [
        "vabc_0000", "vabc_0000", "vabc_0002", "vabc_0002", "vabc_0004", "vabc_0005",
    ]


def test_duplicate_groups_are_transitive_and_threshold_sensitive():
    def angle(degrees):
        r = math.radians(degrees)
        return np.array([math.cos(r), math.sin(r)], dtype=np.float32)

    chain = [angle(0), angle(15), angle(30), angle(90)]
    threshold = math.cos(math.radians(20))  # neighbours pass, ends (30 degrees apart) do not
    assert duplicate_groups(chain, threshold) == [0, 0, 0, 3]
    assert duplicate_groups(chain, 0.999) == [0, 1, 2, 3]


def test_config_validation_guards_batches():
    with pytest.raises(ValueError, match="min_batch_size"):
        ClipConfig(batch_size=4, min_batch_size=8)
    with pytest.raises(ValueError):
        ClipConfig(unknown_key=1)
    assert ClipConfig(queries=["a goal"]).queries == ["a goal"]
