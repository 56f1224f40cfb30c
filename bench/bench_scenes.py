"""Shot-detection accuracy at known splice points, and speed, for content, adaptive, transnetv2 and
consensus (union and both).

A spliced video is built from real footage: one segment from each of the real sample videos
(`--videos`, default ../shared/realvideos next to the repository), scaled into 320×180 at 25 fps,
joined in turn by a hard cut, a crossfade and a fade through black, the gradual ones 0.5, 1.0
and 1.5 s long. Every splice frame is known. Each detector then runs the way a build runs it
(the one decode pass, then the model on the spooled 48×27 frames).

A hard splice is found by a cut within ±2 frames of it (or a transition span holding it); a
gradual one by a cut or span inside its frames (±2). A detection that finds no splice is a false
positive. The segments are short stretches of real video and may hold a cut of their own, which
every detector is charged for alike. Speeds are frames per second of the decode pass (with its
detector) and of the model alone, on the CPU and, when torch sees one, on CUDA.

    python bench/bench_scenes.py [--videos DIR] [--segment-s 2.4] [--batch-windows 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from vidcorpus.config import load_config  # noqa: E402
from vidcorpus.config.transnet import TransnetConfig  # noqa: E402
from vidcorpus.pipelines.scan import Input, scan_video  # noqa: E402
from vidcorpus.pipelines.shots import with_model_cuts  # noqa: E402
from vidcorpus.scoring.transnet import load_shot_model, predict_shots  # noqa: E402

SIZE, FPS, TOLERANCE = (320, 180), 25, 2
GRADUAL_FRAMES = (12, 25, 38)       # 0.5, 1.0, 1.5 s
KINDS = ("hard", "crossfade", "fade")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "realvideos"))
    parser.add_argument("--segment-s", type=float, default=2.4)
    parser.add_argument("--batch-windows", type=int, default=8)
    return parser.parse_args()


def segment_of(path: Path, seconds: float) -> np.ndarray | None:
    """`seconds` of RGB frames at 25 fps from 30% into the video, letterboxed into SIZE."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            duration = float(stream.duration * stream.time_base) if stream.duration else None
            start = 0.3 * duration if duration and duration > seconds / 0.6 else 0.0
            frames, origin = [], None
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                origin = t if origin is None else origin
                while t - origin >= start + len(frames) / FPS and len(frames) < seconds * FPS:
                    frames.append(letterbox(frame.to_ndarray(format="rgb24")))
                if len(frames) >= seconds * FPS:
                    return np.stack(frames)
    except (av.error.FFmpegError, IndexError, ValueError):
        return None
    return None


def letterbox(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = min(SIZE[0] / w, SIZE[1] / h)
    nw, nh = max(2, round(w * scale)), max(2, round(h * scale))
    out = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    x, y = (SIZE[0] - nw) // 2, (SIZE[1] - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def splice(segments: list[np.ndarray]) -> tuple[list[np.ndarray], list[tuple[str, int, int]]]:
    """Frames joined by hard cuts, crossfades and fades in turn; truth as (kind, start, end)."""
    frames, truth = list(segments[0]), []
    for i, segment in enumerate(segments[1:]):
        kind, length = KINDS[i % 3], GRADUAL_FRAMES[(i // 3) % 3]
        segment = list(segment)
        if kind == "hard":
            truth.append((kind, len(frames), len(frames)))
        elif kind == "crossfade":
            start = len(frames) - length
            for k in range(length):
                alpha = (k + 1) / (length + 1)
                frames[start + k] = mix(frames[start + k], segment[k], alpha)
            segment = segment[length:]
            truth.append((kind, start, len(frames)))
        else:
            half = length // 2
            start = len(frames) - half
            for k in range(half):
                frames[start + k] = mix(frames[start + k], 0, (k + 1) / half)
                segment[k] = mix(0, segment[k], k / half)
            truth.append((kind, start, len(frames) + half))
        frames += segment
    return frames, truth


def mix(a, b, alpha: float) -> np.ndarray:
    return np.round(np.asarray(a, np.float32) * (1 - alpha) + np.asarray(b, np.float32) * alpha).astype(np.uint8)


def write(path: str, frames: list[np.ndarray]) -> None:
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.codec_context.options = {"crf": "16", "preset": "veryfast"}
        stream.time_base = Fraction(1, FPS)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def score(cuts: list[int], spans: list[tuple[int, int]], truth: list[tuple[str, int, int]]) -> dict:
    detections = [(c, c) for c in cuts] + [(a, b - 1) for a, b in spans]
    used, found = set(), {kind: 0 for kind in KINDS}
    for kind, start, end in truth:
        lo, hi = start - TOLERANCE, max(start, end - 1) + TOLERANCE
        for j, (a, b) in enumerate(detections):
            if j not in used and a <= hi and b >= lo:
                used.add(j)
                found[kind] += 1
                break
    total = {kind: sum(1 for t in truth if t[0] == kind) for kind in KINDS}
    return {"precision": len(used) / len(detections) if detections else 1.0,
            "recall": sum(found.values()) / len(truth),
            **{f"recall_{kind}": found[kind] / total[kind] for kind in KINDS},
            "detections": len(detections)}


def timed_scan(path: str, detector: str, work: str):
    cfg = load_config(None, [f"scenes.detector={detector}", "runner.progress=false"])
    size = Path(path).stat().st_size
    start = time.perf_counter()
    scanned = scan_video(Input(path, size, f"v{detector}"), cfg, work)
    return scanned, cfg, time.perf_counter() - start


def model_speed(frames, device: str, batch_windows: int):
    model = load_shot_model(TransnetConfig(device=device))
    predict_shots(model, frames, batch_windows)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    probabilities = predict_shots(model, frames, batch_windows)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return probabilities, frames.count / seconds, memory


def main() -> None:
    args = parse_args()
    sources = sorted(p for p in Path(args.videos).rglob("*") if p.suffix.lower() in {".mp4", ".mkv", ".mov", ".avi", ".webm"})
    segments = [s for s in (segment_of(p, args.segment_s) for p in sources) if s is not None]
    frames, truth = splice(segments)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "spliced.mp4")
        write(path, frames)
        print(f"spliced set: {len(segments)} real segments, {len(frames)} frames at {FPS} fps; splices: "
              + ", ".join(f"{sum(t[0] == k for t in truth)} {k}" for k in KINDS))
        rows, speeds = {}, {}
        for detector in ("content", "adaptive"):
            scanned, _, seconds = timed_scan(path, detector, tmp)
            rows[detector] = score(scanned.scan.cuts, [], truth)
            speeds[detector] = len(frames) / seconds
        scanned, cfg, seconds = timed_scan(path, "consensus", tmp)
        speeds["pass+spool"] = len(frames) / seconds
        probabilities, speeds["transnetv2 cpu"], _ = model_speed(scanned.shot_frames, "cpu", args.batch_windows)
        gpu = None
        if torch.cuda.is_available():
            _, speeds["transnetv2 cuda fp16"], gpu = model_speed(scanned.shot_frames, "cuda", args.batch_windows)
        for name, overrides in (("transnetv2", ["scenes.detector=transnetv2"]),
                                ("consensus union", ["scenes.detector=consensus"]),
                                ("consensus both", ["scenes.detector=consensus", "scenes.transnet.consensus_rule=both"])):
            scenes = load_config(None, overrides).scenes
            found = with_model_cuts(scanned, probabilities, scenes).scan
            rows[name] = score(found.cuts, found.transitions, truth)
    print(f"\n{'detector':<17}{'precision':>10}{'recall':>8}{'hard':>7}{'xfade':>7}{'fade':>7}{'found':>7}")
    for name, r in rows.items():
        print(f"{name:<17}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['recall_hard']:>7.2f}"
              f"{r['recall_crossfade']:>7.2f}{r['recall_fade']:>7.2f}{r['detections']:>7}")
    print("\nframes per second (this machine, same run; ratios against the content pass)")
    for name, fps in speeds.items():
        print(f"  {name:<22}{fps:>9.1f}   x{fps / speeds['content']:.3f}")
    if gpu is not None:
        print(f"  peak CUDA memory (transnetv2, {args.batch_windows} windows a pass): {gpu:.0f} MiB")
    print("  model frames/s exclude the decode pass; transnetv2 and consensus cost the pass plus the model")


if __name__ == "__main__":
    main()
