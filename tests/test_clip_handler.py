"""CLIP loading, embedding and the Beam RunInference handler, with a tiny random open_clip model.

No test downloads weights: models are randomly initialised (seeded) through the same loading
code the build uses, or loaded back from a checkpoint file a test wrote.
"""

import json

import apache_beam as beam
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.util import assert_that

from vidcorpus.scoring.clip import (
    ClipConfig,
    ClipWeightsUnavailable,
    OpenClipImageHandler,
    clip_model_tag,
    embed_text_prompts,
    keyed_clip_handler,
    load_clip_encoder,
    resolve_precision,
)

TINY_ARCHITECTURE = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> ClipConfig:
    """A random-weight config for a 3M-parameter architecture registered from a JSON file."""
    path = tmp_path_factory.mktemp("arch") / "vidcorpus-test-tiny.json"
    path.write_text(json.dumps(TINY_ARCHITECTURE))
    return ClipConfig(
        enabled=True,
        model="vidcorpus-test-tiny",
        model_config_path=str(path),
        pretrained=None,
        allow_random_weights=True,
        device="cpu",
        batch_size=4,
    )


def frames(count: int, seed: int = 0, size=(36, 48)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(count)]


def test_images_become_unit_float32_vectors_whatever_their_size(tiny_config):
    encoder = load_clip_encoder(tiny_config)
    batch = frames(3) + frames(2, seed=1, size=(90, 160))
    embeddings = encoder.embed_images(batch)
    assert embeddings.shape == (5, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(embeddings[0], embeddings[1])  # different frames, different vectors
    assert encoder.embed_images([]).shape == (0, 32)
    assert encoder.tag == "open_clip:vidcorpus-test-tiny:random-seed0"


def test_non_rgb_frames_are_rejected_with_their_shape(tiny_config):
    encoder = load_clip_encoder(tiny_config)
    with pytest.raises(ValueError, match=r"\(36, 48\)"):
        encoder.embed_images([np.zeros((36, 48), dtype=np.uint8)])
    with pytest.raises(ValueError, match="float32"):
        encoder.embed_images([np.zeros((36, 48, 3), dtype=np.float32)])


def test_text_prompts_embed_in_the_same_space(tiny_config):
    texts = embed_text_prompts(tiny_config, ["a dog catches a ball", "a city at night"])
    assert texts.shape == (2, 32) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert float(texts[0] @ texts[1]) < 0.9999


def test_random_initialisation_is_seeded(tiny_config):
    batch = frames(2)
    same = [load_clip_encoder(tiny_config).embed_images(batch) for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])
    reseeded = load_clip_encoder(tiny_config.model_copy(update={"seed": 7})).embed_images(batch)
    assert not np.allclose(same[0], reseeded)
    before = torch.random.get_rng_state()
    load_clip_encoder(tiny_config)
    assert torch.equal(before, torch.random.get_rng_state())  # caller's RNG untouched


def test_checkpoint_file_loads_back_the_same_model(tiny_config, tmp_path):
    original = load_clip_encoder(tiny_config.model_copy(update={"seed": 3}))
    checkpoint = tmp_path / "tiny.pt"
    torch.save(original.model.state_dict(), checkpoint)

    from_file = tiny_config.model_copy(
        update={"checkpoint_path": str(checkpoint), "allow_random_weights": False}
    )
    loaded = load_clip_encoder(from_file)
    batch = frames(3)
    np.testing.assert_allclose(loaded.embed_images(batch), original.embed_images(batch), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_texts(["x"]), original.embed_texts(["x"]), atol=1e-6)
    assert clip_model_tag(from_file) == "open_clip:vidcorpus-test-tiny:checkpoint:tiny.pt"

    as_pretrained_path = tiny_config.model_copy(
        update={"pretrained": str(checkpoint), "allow_random_weights": False}
    )
    np.testing.assert_allclose(
        load_clip_encoder(as_pretrained_path).embed_images(batch), original.embed_images(batch), atol=1e-6
    )


def test_checkpoint_for_another_architecture_is_reported_as_a_mismatch(tiny_config, tmp_path):
    checkpoint = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, checkpoint)
    config = tiny_config.model_copy(update={"checkpoint_path": str(checkpoint)})
    with pytest.raises(RuntimeError, match="does not fit architecture"):
        load_clip_encoder(config)


def test_missing_weights_name_the_settings_to_fix(tiny_config, tmp_path):
    no_weights = tiny_config.model_copy(update={"allow_random_weights": False})
    with pytest.raises(ClipWeightsUnavailable) as refused:
        load_clip_encoder(no_weights)
    message = str(refused.value)
    for key in ("clip.checkpoint_path", "clip.pretrained", "clip.cache_dir", "clip.enabled"):
        assert key in message

    missing_file = tiny_config.model_copy(update={"checkpoint_path": str(tmp_path / "absent.pt")})
    with pytest.raises(ClipWeightsUnavailable, match="absent.pt"):
        load_clip_encoder(missing_file)

    unknown_tag = no_weights.model_copy(update={"pretrained": "no-such-tag"})
    with pytest.raises(ClipWeightsUnavailable, match="no-such-tag"):
        load_clip_encoder(unknown_tag)


def test_known_tag_without_network_or_cache_fails_fast_and_lists_tags(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = ClipConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path), device="cpu")
    with pytest.raises(ClipWeightsUnavailable) as refused:
        load_clip_encoder(config)
    message = str(refused.value)
    assert "laion2b_s34b_b79k" in message and "openai" in message  # the tag list for ViT-B-32
    assert "clip.cache_dir" in message


def test_unknown_architecture_and_bad_devices_are_config_errors(tiny_config):
    with pytest.raises(ValueError, match="open_clip.list_models"):
        load_clip_encoder(tiny_config.model_copy(update={"model": "ViT-Nope-99"}))
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision(tiny_config.model_copy(update={"precision": "fp16"}), torch.device("cpu"))
    assert resolve_precision(tiny_config, torch.device("cpu")) == "fp32"
    assert resolve_precision(tiny_config, torch.device("cuda")) == "fp16"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="clip.device"):
            load_clip_encoder(tiny_config.model_copy(update={"device": "cuda"}))


def test_handler_batching_sharing_and_hints_follow_config(tiny_config):
    handler = OpenClipImageHandler(tiny_config)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 4}
    assert not handler.share_model_across_processes()
    shared = OpenClipImageHandler(
        tiny_config.model_copy(
            update={"model_copies": 1, "min_batch_size": 2, "accelerator": "type:nvidia-l4;count:1"}
        )
    )
    assert shared.share_model_across_processes() and shared.model_copies() == 1
    assert shared.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 4}
    assert shared.get_resource_hints() == {"accelerator": "type:nvidia-l4;count:1"}
    assert handler.get_num_bytes(frames(2)) == 2 * 36 * 48 * 3
    with pytest.raises(ValueError):
        handler.validate_inference_args({"temperature": 1.0})


def test_run_inference_in_a_beam_pipeline_matches_direct_embedding(tiny_config):
    keyed = [(f"v0_{i:03d}", frame) for i, frame in enumerate(frames(10, seed=5))]
    expected = dict(zip((k for k, _ in keyed), load_clip_encoder(tiny_config).embed_images([f for _, f in keyed])))

    def check(results):
        got = dict(results)
        assert sorted(got) == sorted(expected)
        for key, embedding in got.items():
            assert embedding.shape == (32,) and embedding.dtype == np.float32
            assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5
            np.testing.assert_allclose(embedding, expected[key], atol=1e-5)

    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        embedded = (
            pipeline
            | beam.Create(keyed)
            | RunInference(keyed_clip_handler(tiny_config))
        )
        assert_that(embedded, check)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_embeddings_agree_with_cpu_fp32(tiny_config):
    batch = frames(6)
    cpu = load_clip_encoder(tiny_config).embed_images(batch)
    gpu_encoder = load_clip_encoder(tiny_config.model_copy(update={"device": "auto"}))
    assert gpu_encoder.device.type == "cuda" and gpu_encoder.dtype == torch.float16
    gpu = gpu_encoder.embed_images(batch)
    assert gpu.dtype == np.float32
    assert float(np.min(np.sum(cpu * gpu, axis=1))) > 0.99
