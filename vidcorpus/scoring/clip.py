"""CLIP image and text embeddings with open_clip, behind an Apache Beam RunInference handler.

The pipeline sees only `RunInference(keyed_clip_handler(config))`: model loading, device and
precision, batching and preprocessing live here. Loading goes through one function,
`load_clip_encoder`, whether the weights come from an open_clip tag, a local checkpoint or
(tests and benchmarks only, when the config says so) a seeded random initialisation.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler
from PIL import Image

from vidcorpus.config.clip import ClipConfig

__all__ = [
    "ClipConfig",
    "ClipEncoder",
    "ClipWeightsUnavailable",
    "OpenClipImageHandler",
    "check_clip_weights",
    "clip_model_tag",
    "embed_text_prompts",
    "fetch_clip_weights",
    "keyed_clip_handler",
    "load_clip_encoder",
    "resolve_device",
    "resolve_precision",
]

_PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_registered_config_paths: set[str] = set()
_registry_lock = threading.Lock()


class ClipWeightsUnavailable(RuntimeError):
    """Raised when the configured CLIP weights cannot be found or fetched."""


class ClipEncoder:
    """A loaded open_clip model with the preprocessing and tokenizer that belong to it.

    Both methods take and return plain numpy so the object also works behind Beam's
    cross-process model sharing, where calls travel through a proxy.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Any,
        tokenizer: Any,
        device: torch.device,
        dtype: torch.dtype,
        tag: str,
    ):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.tag = tag
        self._embed_dim: Optional[int] = None

    @property
    def embed_dim(self) -> int:
        """Width of the joint image/text embedding space."""
        if self._embed_dim is None:
            self._embed_dim = int(self.embed_texts([""]).shape[1])
        return self._embed_dim

    def embed_images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised float32 embeddings (N, D) of RGB uint8 frames (H, W, 3) of any size."""
        if len(frames) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        pixels = torch.stack([self.preprocess(_frame_to_image(frame)) for frame in frames])
        with torch.inference_mode():
            features = self.model.encode_image(pixels.to(self.device, dtype=self.dtype))
        return _unit_rows(features)

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings (Q, D) of text prompts, in the image space."""
        tokens = self.tokenizer(list(prompts)).to(self.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
        return _unit_rows(features)


def _frame_to_image(frame: np.ndarray) -> Image.Image:
    """PIL view of one decoded frame; rejects anything but RGB uint8 so errors name the cause."""
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"CLIP expects RGB uint8 frames shaped (H, W, 3), got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _unit_rows(features: torch.Tensor) -> np.ndarray:
    """Normalise in float32 (fp16 norms lose digits) and hand back numpy."""
    return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def resolve_device(config: ClipConfig) -> torch.device:
    """The torch device for `config.device`; 'auto' prefers CUDA when torch sees one."""
    has_cuda = torch.cuda.is_available()
    if config.device == "cuda" and not has_cuda:
        raise RuntimeError(
            "clip.device is 'cuda' but torch sees no CUDA device; set clip.device to 'auto' or 'cpu'"
        )
    if config.device == "cuda" or (config.device == "auto" and has_cuda):
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_precision(config: ClipConfig, device: torch.device) -> str:
    """open_clip precision name: 'auto' is fp16 on CUDA and fp32 on CPU."""
    if config.precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError("clip.precision 'fp16' needs CUDA; use 'fp32' or 'bf16' on CPU")
    return config.precision


def clip_model_tag(config: ClipConfig) -> str:
    """Short provenance string for manifests: architecture plus where its weights came from."""
    if config.checkpoint_path is not None:
        return f"open_clip:{config.model}:checkpoint:{os.path.basename(config.checkpoint_path)}"
    if config.wants_random_weights:
        return f"open_clip:{config.model}:random-seed{config.seed}"
    return f"open_clip:{config.model}:{config.pretrained}"


def _register_model_config(path: str) -> None:
    """Make an extra architecture JSON (file or folder) visible to open_clip, once per process."""
    resolved = os.path.abspath(path)
    with _registry_lock:
        if resolved in _registered_config_paths:
            return
        if not os.path.exists(resolved):
            raise FileNotFoundError(f"clip.model_config_path does not exist: {resolved}")
        open_clip.add_model_config(resolved)
        _registered_config_paths.add(resolved)


def _check_architecture(model: str) -> None:
    """Fail early, with the way out, on an architecture open_clip does not know."""
    schema, _ = open_clip.factory.parse_model_name(model)
    if schema is None and open_clip.get_model_config(model.replace("/", "-")) is None:
        raise ValueError(
            f"Unknown open_clip architecture clip.model={model!r}. Use a name from "
            "open_clip.list_models() (e.g. 'ViT-B-32'), an 'hf-hub:org/repo' or "
            "'local-dir:/path' reference, or register a JSON config with clip.model_config_path."
        )


def _missing_weights_message(config: ClipConfig, reason: str) -> str:
    tags = open_clip.list_pretrained_tags_by_model(config.model)
    tag_hint = f" (tags for {config.model}: {', '.join(tags)})" if tags else ""
    return (
        f"No CLIP weights for clip.model={config.model!r}: {reason}. Supply weights in one of "
        "these ways: clip.checkpoint_path = a local open_clip checkpoint file "
        "(.pt/.bin/.safetensors); clip.pretrained = an open_clip pretrained tag"
        f"{tag_hint}, downloaded from the Hugging Face Hub into clip.cache_dir (for an offline "
        "machine, fill that folder beforehand with `vidcorpus models fetch --set clip.cache_dir=<folder>` "
        "where the Hub is reachable); or clip.model = "
        "'hf-hub:org/repo' / 'local-dir:/path'. Set clip.enabled = false to build without CLIP. "
        "Random weights (clip.pretrained = null with clip.allow_random_weights = true) are for "
        "tests and benchmarks only."
    )


def _weights_source(config: ClipConfig) -> Optional[str]:
    """What to pass to open_clip as `pretrained`: a checkpoint path, a tag, or None for random.

    Pretrained tags are fetched here first so that a missing download is reported as missing
    weights, not as whatever open_clip raises deeper down.
    """
    if config.checkpoint_path is not None:
        if not os.path.isfile(config.checkpoint_path):
            raise ClipWeightsUnavailable(
                _missing_weights_message(
                    config, f"clip.checkpoint_path {config.checkpoint_path!r} is not a file"
                )
            )
        return config.checkpoint_path
    schema, _ = open_clip.factory.parse_model_name(config.model)
    if schema is not None:
        return None  # hf-hub: / local-dir: references carry their own weights
    if config.wants_random_weights:
        if not config.allow_random_weights:
            raise ClipWeightsUnavailable(
                _missing_weights_message(config, "neither clip.pretrained nor clip.checkpoint_path is set")
            )
        return None
    tag_cfg = open_clip.get_pretrained_cfg(config.model, config.pretrained)
    if tag_cfg:
        _fetch_tag(config, tag_cfg)
        return config.pretrained
    if os.path.isfile(config.pretrained):
        return config.pretrained
    raise ClipWeightsUnavailable(
        _missing_weights_message(
            config, f"clip.pretrained {config.pretrained!r} is neither a known tag nor a file"
        )
    )


HUB_TIMEOUT_S = 5.0
"""How long the weights check waits for the weights' host before calling it unreachable."""


def _fetch_tag(config: ClipConfig, tag_cfg: dict) -> str:
    """The local file of a pretrained tag's weights: from the cache, else downloaded. When the
    weights are not cached and their host does not answer within seconds, this fails at once
    rather than after the Hub client's retries (a minute offline)."""
    cached = _cached_tag_file(tag_cfg, config.cache_dir)
    if cached is not None:
        return cached
    host = _weights_host(tag_cfg)
    if not _answers(host):
        raise ClipWeightsUnavailable(_missing_weights_message(
            config, f"pretrained tag {config.pretrained!r} is not in the cache and {host} cannot be reached"))
    try:
        return open_clip.download_pretrained(tag_cfg, cache_dir=config.cache_dir)
    except Exception as error:  # network, auth, missing cache: all mean "no weights here"
        raise ClipWeightsUnavailable(_missing_weights_message(
            config, f"pretrained tag {config.pretrained!r} could not be fetched ({error})")) from error


def _cached_tag_file(tag_cfg: dict, cache_dir: Optional[str]) -> Optional[str]:
    """Where open_clip's own download would find the tag's weights already, or None."""
    if tag_cfg.get("file"):
        return tag_cfg["file"] if os.path.isfile(tag_cfg["file"]) else None
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        model_id, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or open_clip.pretrained.HF_WEIGHTS_NAME
        for name in [*open_clip.pretrained._get_safe_alternatives(filename), filename]:
            found = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
        return None
    target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(tag_cfg["url"]))
    return target if os.path.isfile(target) else None


def _weights_host(tag_cfg: dict) -> str:
    from urllib.parse import urlparse

    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants
        return urlparse(constants.ENDPOINT).netloc
    return urlparse(tag_cfg.get("url", "")).netloc


def _answers(host: str, timeout_s: float = HUB_TIMEOUT_S) -> bool:
    name, _, port = host.partition(":")
    try:
        socket.create_connection((name, int(port or 443)), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def check_clip_weights(config: ClipConfig) -> None:
    """Raise `ClipWeightsUnavailable` (or ValueError for an unknown architecture) unless the
    configured weights are on this machine or can be fetched now: the build calls this before
    its pipeline starts, so a missing model costs seconds, not a failed run."""
    if config.model_config_path is not None:
        _register_model_config(config.model_config_path)
    _check_architecture(config.model)
    _weights_source(config)


def fetch_clip_weights(config: ClipConfig) -> str:
    """Download the configured weights into `cache_dir` (the Hugging Face cache when unset) ahead
    of an offline build, and return where they are (`vidcorpus models fetch`)."""
    check_clip_weights(config)
    if config.checkpoint_path is not None:
        return config.checkpoint_path
    tag_cfg = open_clip.get_pretrained_cfg(config.model, config.pretrained or "")
    if tag_cfg:
        return _fetch_tag(config, tag_cfg)
    return config.pretrained or config.model


def load_clip_encoder(config: ClipConfig) -> ClipEncoder:
    """Build the configured open_clip model, its eval preprocessing and tokenizer.

    Random initialisation is seeded (`config.seed`) without touching the caller's RNG state,
    so tests and benchmarks get the same model every time.
    """
    if config.model_config_path is not None:
        _register_model_config(config.model_config_path)
    _check_architecture(config.model)
    device = resolve_device(config)
    precision = resolve_precision(config, device)
    source = _weights_source(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                config.model,
                pretrained=source,
                precision=precision,
                device=device,
                cache_dir=config.cache_dir,
                pretrained_text=False,
            )
        except RuntimeError as error:
            if source is not None and os.path.isfile(source):
                raise RuntimeError(
                    f"CLIP checkpoint {source!r} does not fit architecture clip.model="
                    f"{config.model!r}: {error}"
                ) from error
            raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(config.model, cache_dir=config.cache_dir)
    return ClipEncoder(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=device,
        dtype=_PRECISION_DTYPES[precision],
        tag=clip_model_tag(config),
    )


def embed_text_prompts(config: ClipConfig, prompts: Sequence[str]) -> np.ndarray:
    """Unit text embeddings (Q, D) for query-guided keyframes, from the configured model.

    Prompts are few and fixed per build, so compute them once (at pipeline construction) and
    hand the small array to the selection step.
    """
    return load_clip_encoder(config).embed_texts(prompts)


class OpenClipImageHandler(ModelHandler[np.ndarray, np.ndarray, ClipEncoder]):
    """RunInference handler: RGB uint8 frames in, unit float32 embeddings (D,) out.

    One encoder per worker process, shared by its threads through RunInference's shared
    handle; with `model_copies` set, that many copies are shared across a machine's
    processes instead (GPU workers, where each process's CUDA context and weights would
    otherwise multiply). Batches are fixed-size by default (min = max = batch_size) because
    GPU throughput rises with batch size and the frames of one video arrive together.
    The prediction is the embedding alone: returning the example too would carry pixels
    downstream for nothing.
    """

    def __init__(self, config: ClipConfig):
        super().__init__(
            min_batch_size=config.min_batch_size or config.batch_size,
            max_batch_size=config.batch_size,
            model_copies=config.model_copies,
        )
        self._config = config

    @property
    def config(self) -> ClipConfig:
        return self._config

    def load_model(self) -> ClipEncoder:
        return load_clip_encoder(self._config)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: ClipEncoder,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> Iterable[np.ndarray]:
        return list(model.embed_images(list(batch)))

    def validate_inference_args(self, inference_args: Optional[dict[str, Any]]) -> None:
        if inference_args:
            raise ValueError(f"OpenClipImageHandler takes no inference_args, got {sorted(inference_args)}")

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        """Pixel bytes; the default pickles the whole batch just to measure it."""
        return int(sum(np.asarray(frame).nbytes for frame in batch))

    def get_metrics_namespace(self) -> str:
        return "vidcorpus_clip"

    def get_resource_hints(self) -> dict:
        return {"accelerator": self._config.accelerator} if self._config.accelerator else {}


def keyed_clip_handler(config: ClipConfig) -> KeyedModelHandler:
    """Handler for `(key, frame)` elements; RunInference then yields `(key, embedding)`."""
    return KeyedModelHandler(OpenClipImageHandler(config))
