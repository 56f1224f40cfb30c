"""Benchmark the local build against baselines measured in the same run.

Speed, one process, same videos:
  (a) bare single-pass threaded PyAV decode (the decoder vidcorpus uses),
  (b) PySceneDetect's own `detect(path, ContentDetector())`,
  (c) `vidcorpus build` (no CLIP / LLM / task stages), with clip MP4s off and with the default `copy`.
Targets: (c)/(a) <= 1.3, and (c) faster than (b).

Memory: peak RSS of a build (fresh process) on a generated 20-minute 720p video vs a
1-minute one; target ratio <= 1.2.

Videos: VIDCORPUS_REALVIDEOS (a folder of real files) when set, else generated ones.
    .venv/bin/python bench/bench_build.py [--skip-memory] [--long-minutes 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import av

from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import build
from vidcorpus.pipelines.discover import discover


BUILD_ONLY = ["runner.progress=false", "clip.enabled=false", "llm.enabled=false", "tasks.enabled=false"]


def bare_decode(paths: list[str]) -> int:
    frames = 0
    for path in paths:
        try:
            with av.open(path) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                for _ in c.decode(stream):
                    frames += 1
        except (av.error.FFmpegError, IndexError):
            pass
    return frames


def pyscenedetect(paths: list[str]) -> None:
    from scenedetect import ContentDetector, detect
    for path in paths:
        try:
            detect(path, ContentDetector())
        except Exception:  # noqa: BLE001 - a file PySceneDetect cannot open costs what it cost
            pass


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def generated_inputs(folder: str) -> str:
    """Four 45 s 640x360 videos with a cut every 3-6 s."""
    for v in range(4):
        scenes = [Scene(25 * (3 + (i * 7 + v) % 4), seed=100 * v + i) for i in range(10)]
        write_video(os.path.join(folder, f"gen{v}.mp4"), scenes, fps=25, size=(640, 360))
    return folder


def speed(inputs: str, tmp: str) -> None:
    cfg = load_config(None, BUILD_ONLY)
    paths, _ = discover(inputs, cfg.input)
    bare_decode(paths[:2])  # warm the page cache and libraries
    ta, frames = timed(bare_decode, paths)
    tb, _ = timed(pyscenedetect, paths)
    tc_off, _ = timed(build, inputs, os.path.join(tmp, "off"), load_config(None, BUILD_ONLY + ["clips.mode=off"]))
    tc, summary = timed(build, inputs, os.path.join(tmp, "copy"), cfg)
    print(f"videos: {len(paths)} files, {frames} frames, {summary.counts['clips']} clips")
    print(f"{'run':44s} {'seconds':>8s} {'frames/s':>9s} {'÷ (a)':>7s}")
    for name, t in (("(a) bare threaded PyAV decode", ta), ("(b) PySceneDetect detect(ContentDetector)", tb),
                    ("(c) vidcorpus build, clips off", tc_off), ("(c) vidcorpus build, clips copy (default)", tc)):
        print(f"{name:44s} {t:8.2f} {frames / t:9.0f} {t / ta:7.2f}")
    print(f"target (c)/(a) <= 1.30: clips off {tc_off / ta:.2f}, default {tc / ta:.2f}; "
          f"(b)/(a) = {tb / ta:.2f}")


def peak_rss_of_build(video_dir: str, out: str) -> int:
    """Peak RSS (bytes) of a build in a fresh process."""
    code = ("import sys; from vidcorpus.config import load_config; from vidcorpus.pipelines.build import build; "
            f"build(sys.argv[1], sys.argv[2], load_config(None, {BUILD_ONLY!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code, video_dir, out])
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError("build failed")
    return usage.ru_maxrss * 1024


def memory(tmp: str, long_minutes: float) -> None:
    sizes = {}
    for label, minutes in (("1 min", 1.0), (f"{long_minutes:g} min", long_minutes)):
        folder = os.path.join(tmp, f"mem-{minutes:g}")
        os.makedirs(folder)
        scene_frames = 24 * 8
        count = max(1, round(minutes * 60 * 24 / scene_frames))
        t, _ = timed(write_video, os.path.join(folder, "long.mp4"), [Scene(scene_frames, i) for i in range(count)],
                     24, (1280, 720))
        took, rss = timed(peak_rss_of_build, folder, os.path.join(tmp, f"out-{minutes:g}"))
        sizes[label] = rss
        print(f"720p {label:>7s}: peak RSS {rss / 2**20:7.1f} MiB  (build {took:.1f} s; generating took {t:.1f} s)")
    short, long_ = sizes.values()
    print(f"target peak RSS ratio long/short <= 1.20: {long_ / short:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--long-minutes", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            real = os.environ.get("VIDCORPUS_REALVIDEOS")
            if real:
                print(f"speed on real videos from VIDCORPUS_REALVIDEOS")
                inputs = real
            else:
                print("speed on generated videos (set VIDCORPUS_REALVIDEOS for real ones)")
                inputs = generated_inputs(tempfile.mkdtemp(dir=tmp))
            speed(inputs, tmp)
        if not args.skip_memory:
            memory(tmp, args.long_minutes)


if __name__ == "__main__":
    main()
