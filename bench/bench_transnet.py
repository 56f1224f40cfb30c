"""TransNetV2 frames per second: the vidcorpus handler's path (windows read from a frame spool,
`--batch-windows` per forward pass, fp16 autocast on CUDA) against the package's own
`predict_frames` on the whole array (one window per pass), the baseline, in the same run.

Frames are random 48×27 RGB (the model's speed does not depend on what it sees). Model loading
is left out of both; peak GPU memory is torch's allocator peak for each path.

    python bench/bench_transnet.py                          # CUDA when present, else CPU
    python bench/bench_transnet.py --device cuda --frames 6000 --batch-windows 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vidcorpus.config.transnet import TransnetConfig  # noqa: E402
from vidcorpus.media.shotframes import SHOT_FRAME_SHAPE, ShotFrames  # noqa: E402
from vidcorpus.scoring.transnet import load_shot_model, predict_shots  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--batch-windows", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args()


def timed(run, device: torch.device) -> tuple[float, float | None]:
    """(best seconds, peak MiB on CUDA) of `run()`."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def main() -> None:
    args = parse_args()
    model = load_shot_model(TransnetConfig(device=args.device))
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, *SHOT_FRAME_SHAPE), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "frames.rgb"
        spool.write_bytes(frames.tobytes())
        shot_frames = ShotFrames(str(spool), args.frames)
        whole = torch.from_numpy(frames).to(model.device)
        paths = {
            "package predict_frames": lambda: model.network.predict_frames(whole, quiet=True),
            f"vidcorpus, {args.batch_windows} windows": lambda: predict_shots(model, shot_frames, args.batch_windows),
        }
        for run in paths.values():  # warm-up (CUDA kernels, allocator)
            run()
        results = {name: min((timed(run, model.device) for _ in range(args.rounds)), key=lambda r: r[0])
                   for name, run in paths.items()}
    print(f"TransNetV2 on {model.device} ({str(model.dtype).removeprefix('torch.')}), {args.frames} frames, "
          f"torch threads {torch.get_num_threads()}, best of {args.rounds}")
    print(f"{'path':<28}{'frames/s':>10}{'peak MiB':>10}")
    for name, (seconds, memory) in results.items():
        print(f"{name:<28}{args.frames / seconds:>10.1f}{'' if memory is None else f'{memory:.0f}':>10}")
    (base_s, _), (ours_s, ours_mem) = results.values()
    print(f"vidcorpus/package frames per second: {base_s / ours_s:.3f}")
    print(f"RESULT transnet_fps={args.frames / ours_s:.1f} peak_mib={ours_mem or 0:.0f} ratio={base_s / ours_s:.3f}")


if __name__ == "__main__":
    main()
