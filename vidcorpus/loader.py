"""Reading a release for training: samples from its WebDataset shards, with frames decoded at chosen times.

    from vidcorpus.loader import FrameSampling, VideoDataset, collate
    data = VideoDataset("out/corpus", table="sft", sampling=FrameSampling("uniform", frames=8, size=(224, 224)),
                        shuffle=True)
    batches = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=collate)

`iter_samples` is the same reader as a plain iterator, for code without torch.

A sample is a dict: `key`, `table`, `row` (the clip record, or the sft/rl row), `frames`
((T, H, W, 3) uint8 RGB, every media of the row in order), `frame_times` (seconds on each
media's own clock), `frame_media` (which media each frame shows) and `backend` (decord or pyav).
Clip samples read the clip MP4 in their own shard; task rows read their probe MP4 or the clip
MP4s that cover a window (`vidcorpus.release.media`), so nothing outside the release is opened.

Frame times per media (`FrameSampling.mode`):

- ``uniform``: `frames` times at the centres of equal slices of the media;
- ``fps``: one frame per 1 / `fps` seconds (slice centres), at most `max_frames` (then uniform);
- ``task``: the times the row itself names: a clip's keyframes, an sft row's `frames` (frames
  mode); rows that name none (video mode, rl) fall back to ``uniform``.

Shards are split the WebDataset way: the shard list (shuffled per epoch with a seed shared by
every process, when `shuffle` is on) is divided by rank, then by data-loader worker, so each
shard is read by exactly one reader; samples are then shuffled in a seeded buffer.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import braceexpand
import numpy as np
from webdataset.filters import shuffle as shuffle_samples
from webdataset.tariterators import group_by_keys, tar_file_expander
from webdataset.utils import pytorch_worker_info

from vidcorpus.release.files import ReleaseFiles
from vidcorpus.release.frames import read_frames
from vidcorpus.release.media import ReleaseMedia, media_recipes
from vidcorpus.tasks.export import frame_times

log = logging.getLogger(__name__)
TABLES = ("clips", "sft", "rl")


@dataclass(frozen=True)
class FrameSampling:
    """Which frames a sample carries; `size` is (height, width), None keeps the stored size."""

    mode: Literal["uniform", "fps", "task"] = "uniform"
    frames: int = 8
    fps: float = 1.0
    max_frames: int = 64
    size: tuple[int, int] | None = None

    def times(self, duration_s: float, task_times: Sequence[float] | None = None) -> list[float]:
        if self.mode == "task" and task_times:
            return [float(t) for t in task_times]
        if self.mode == "fps":
            count = max(1, math.floor(duration_s * self.fps + 1e-9))
            if count <= self.max_frames:
                return [(k + 0.5) / self.fps for k in range(count)]
            return frame_times(duration_s, self.max_frames)
        return frame_times(duration_s, self.frames)


@dataclass(frozen=True)
class ReaderPlace:
    """Where one reader stands: its rank among processes and its data-loader worker."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @classmethod
    def current(cls) -> "ReaderPlace":
        """From torch.distributed and the data-loader worker (or RANK/WORLD_SIZE, WORKER/NUM_WORKERS)."""
        return cls(*pytorch_worker_info())


def shards_for(urls: Sequence[str], place: ReaderPlace, shuffle: bool, seed: int, epoch: int) -> list[str]:
    """This reader's shards: the (seeded, per-epoch) shard order split by rank, then by worker."""
    order = list(urls)
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[place.rank::place.world_size][place.worker::place.num_workers]


def expand_urls(pattern: str | Sequence[str]) -> list[str]:
    """A WebDataset shard spec ('.../train-{000000..000009}.tar') or a list, as a list of URLs."""
    if isinstance(pattern, str):
        return [url for part in pattern.split("::") for url in braceexpand.braceexpand(part)]
    return list(pattern)


class ReleaseReader:
    """Samples of one table of a release, with their frames (see the module docstring)."""

    def __init__(self, release: str, table: str = "clips", split: str = "train",
                 sampling: FrameSampling | None = None, *, shards: str | Sequence[str] | None = None,
                 shuffle: bool = False, seed: int = 0, buffer: int = 64, backend: str = "auto",
                 skip_errors: bool = True):
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; a loader reads one of {TABLES}")
        self.files = ReleaseFiles(release)
        self.media = ReleaseMedia(self.files)
        self.table, self.split = table, split
        self.sampling = sampling or FrameSampling()
        self.urls = expand_urls(shards) if shards is not None else None
        self.shuffle, self.seed, self.buffer = shuffle, seed, buffer
        self.backend, self.skip_errors = backend, skip_errors
        self.epoch = 0

    def shard_urls(self) -> list[str]:
        if self.urls is None:
            self.urls = [self.files.url(path) for path in self.files.shards(self.table, self.split)]
            if not self.urls:
                raise FileNotFoundError(f"{self.files.root}: no {self.table} shards of split {self.split!r} "
                                        "in its manifest")
        return self.urls

    def samples(self, place: ReaderPlace | None = None) -> Iterator[dict[str, Any]]:
        place = place or ReaderPlace.current()
        mine = shards_for(self.shard_urls(), place, self.shuffle, self.seed, self.epoch)
        raw = group_by_keys(tar_file_expander(self._streams(mine)))
        if self.shuffle:
            rng = random.Random(f"{self.seed}:{self.epoch}:{place.rank}:{place.worker}")
            raw = shuffle_samples(bufsize=self.buffer, initial=self.buffer, rng=rng)(raw)
        for sample in raw:
            try:
                yield self.decode(sample)
            except Exception as error:
                if not self.skip_errors:
                    raise
                log.warning("skipping sample %s: %s", sample.get("__key__"), error)

    def _streams(self, urls: Sequence[str]) -> Iterator[dict[str, Any]]:
        for url in urls:
            with self.files.open_url(url) as stream:
                yield {"url": url, "stream": stream}

    def decode(self, sample: dict[str, Any]) -> dict[str, Any]:
        row = json.loads(sample["json"])
        if self.table == "clips":
            frames, times, media, backend = self._clip_frames(row, sample.get("mp4"))
        else:
            frames, times, media, backend = self._task_frames(row)
        row.pop("answer_key", None)  # the media recipes: read above, never handed to a model
        return {"key": sample["__key__"], "table": self.table, "row": row, "frames": frames,
                "frame_times": np.asarray(times, dtype=np.float64), "frame_media": np.asarray(media, dtype=np.int64),
                "backend": backend}

    def _clip_frames(self, clip: dict[str, Any], mp4: bytes | None):
        if mp4 is None:
            raise ValueError(f"clip {clip['clip_id']} has no MP4 in its shard (built with clips.mode off)")
        keyframes = [k["timestamp_s"] - clip["start_s"] for k in clip.get("keyframes") or []]
        times = self.sampling.times(clip["end_s"] - clip["start_s"], keyframes)
        frames, backend = read_frames(mp4, times, self.sampling.size, self.backend)
        return frames, times, [0] * len(times), backend

    def _task_frames(self, row: dict[str, Any]):
        listed: dict[int, list[float]] = {}
        for ref in row.get("frames") or []:
            listed.setdefault(ref["media_index"], []).append(ref["timestamp_s"])
        chunks, all_times, owners, backend = [], [], [], self.backend
        for index, media in enumerate(media_recipes(row)):
            times = self.sampling.times(media["duration_s"], listed.get(index))
            frames, backend = self.media.frames(media, times, self.sampling.size, self.backend)
            chunks.append(frames)
            all_times += times
            owners += [index] * len(times)
        return np.concatenate(chunks) if chunks else np.empty((0, 0, 0, 3), np.uint8), all_times, owners, backend

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.samples()


def iter_samples(release: str, table: str = "clips", split: str = "train", sampling: FrameSampling | None = None,
                 place: ReaderPlace | None = None, **options) -> Iterator[dict[str, Any]]:
    """The plain-iterator form of the loader (no torch needed); `options` as for `ReleaseReader`."""
    return ReleaseReader(release, table, split, sampling, **options).samples(place)


try:
    from torch.utils.data import IterableDataset
except ImportError:  # the plain iterator works without torch
    IterableDataset = object


class VideoDataset(IterableDataset):
    """A PyTorch IterableDataset over a release; each worker and rank reads its own shards."""

    def __init__(self, release: str, table: str = "clips", split: str = "train",
                 sampling: FrameSampling | None = None, **options):
        self.reader = ReleaseReader(release, table, split, sampling, **options)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle shards and samples for a new epoch (call it on every rank with the same value)."""
        self.reader.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.reader.samples(ReaderPlace.current())


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch padded to its longest frame sequence: `frames` (B, T, H, W, 3) uint8 and
    `frame_mask` (B, T) tensors, `frame_times` (B, T), `frame_media` (B, T; -1 on padding),
    with `keys` and `rows` as lists. Frames must share one size (set `FrameSampling.size`)."""
    import torch

    shapes = {s["frames"].shape[1:] for s in samples if len(s["frames"])}
    if len(shapes) > 1:
        raise ValueError(f"frames of different sizes {sorted(shapes)} cannot share a batch: set FrameSampling.size")
    height, width, _ = shapes.pop() if shapes else (0, 0, 3)
    longest = max((len(s["frames"]) for s in samples), default=0)
    frames = torch.zeros((len(samples), longest, height, width, 3), dtype=torch.uint8)
    mask = torch.zeros((len(samples), longest), dtype=torch.bool)
    times = torch.zeros((len(samples), longest), dtype=torch.float64)
    media = torch.full((len(samples), longest), -1, dtype=torch.long)
    for i, sample in enumerate(samples):
        count = len(sample["frames"])
        if count:
            frames[i, :count] = torch.from_numpy(sample["frames"])
            times[i, :count] = torch.from_numpy(sample["frame_times"])
            media[i, :count] = torch.from_numpy(sample["frame_media"])
        mask[i, :count] = True
    return {"keys": [s["key"] for s in samples], "rows": [s["row"] for s in samples], "frames": frames,
            "frame_mask": mask, "frame_times": times, "frame_media": media}
