"""Benchmark the training loader over a real build: decord vs PyAV, 8 and 32 frames, 1 and 2 workers.

Builds `../shared/realvideos` (or `--input`, or reuses `--release`) with the default recipe, then
reads every clip sample of the `train` shards through `VideoDataset` and a torch `DataLoader`
(`num_workers` 1 or 2, uniform frames at 224x224), `--rounds` times round-robin. Prints the median
frames/s and samples/s of each setting and its ratio to PyAV with one worker at the same frame
count, measured in the same run.

    .venv/bin/python bench/bench_loader.py [--release DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vidcorpus.config import load_config
from vidcorpus.loader import FrameSampling, VideoDataset, collate
from vidcorpus.pipelines.build import build
from vidcorpus.release.frames import decord_available

DEFAULT_INPUT = Path(__file__).resolve().parents[1] / ".." / "shared" / "realvideos"
SIZE = (224, 224)


def read_all(release: str, backend: str, frames: int, workers: int) -> tuple[int, int, float]:
    """(samples, frames, seconds) for one pass over the clip shards."""
    data = VideoDataset(release, "clips", sampling=FrameSampling("uniform", frames=frames, size=SIZE),
                        backend=backend, skip_errors=False)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=workers, collate_fn=collate)
    samples = count = 0
    start = time.perf_counter()
    for batch in loader:
        samples += len(batch["keys"])
        count += int(batch["frame_mask"].sum())
    return samples, count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(DEFAULT_INPUT))
    parser.add_argument("--release", help="an existing release to read (skips the build)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    release = args.release
    if release is None:
        release = tempfile.mkdtemp(prefix="bench-loader-") + "/release"
        config = load_config(None, ["runner.progress=false", "tasks.enabled=false", "shards.max_samples=16"])
        started = time.perf_counter()
        summary = build(args.input, release, config)
        print(f"built {summary.counts['clips']} clips in {summary.counts['shards']} shards "
              f"in {time.perf_counter() - started:.1f} s: {release}", flush=True)
    backends = ["pyav"] + (["decord"] if decord_available() else [])
    settings = [(b, f, w) for f in (8, 32) for w in (1, 2) for b in backends]
    runs: dict[tuple, list[tuple[int, int, float]]] = {s: [] for s in settings}
    for _ in range(args.rounds):
        for setting in settings:
            runs[setting].append(read_all(release, *setting))
    print(f"{'backend':8} {'frames':>6} {'workers':>7} {'samples':>7} {'frames/s':>9} {'samples/s':>9} {'vs pyav x1':>10}",
          flush=True)
    for backend, frames, workers in settings:
        samples, count, _ = runs[(backend, frames, workers)][0]
        seconds = statistics.median(r[2] for r in runs[(backend, frames, workers)])
        base = statistics.median(r[2] for r in runs[("pyav", frames, 1)])
        print(f"{backend:8} {frames:>6} {workers:>7} {samples:>7} {count / seconds:>9.0f} {samples / seconds:>9.1f} "
              f"{base / seconds:>9.2f}x")
    if not decord_available():
        print("decord is not installed (pip install 'vidcorpus[loader]'): PyAV only")


if __name__ == "__main__":
    main()
