"""Benchmark the local build against baselines measured in the same run.

Speed, one process, same videos:
  (a) bare single-pass threaded PyAV decode (the decoder vidcorpus uses),
  (b) PySceneDetect's own `detect(path, ContentDetector())`,
  (c) `vidcorpus build` (no CLIP / LLM / task stages), with clip MP4s off and with the default `copy`.
Targets: (c)/(a) <= 1.3, and (c) faster than (b).
Wall times on a shared machine swing by 10 % from run to run, so the runs go round-robin
`--rounds` times: seconds are medians, and each ratio is the median of the rounds' ratios (a run
against the bare decode of its own round). CPU seconds (user + system, all threads) are printed
too, as the steadier measure of the work each run does.

Memory: peak RSS of a build (fresh process) on a generated 20-minute 720p video vs a
1-minute one; target ratio <= 1.2.

Videos: VIDCORPUS_REALVIDEOS (a folder of real files) when set, else generated ones.
    .venv/bin/python bench/bench_build.py [--skip-memory] [--long-minutes 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
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
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    for path in paths:
        try:
            detect(path, ContentDetector())
        except Exception:  # noqa: BLE001 - a file PySceneDetect cannot open costs what it cost
            pass


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(fn, *args) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of one call."""
    cpu = cpu_seconds()
    wall, out = timed(fn, *args)
    return wall, cpu_seconds() - cpu, out


def generated_inputs(folder: str) -> str:
    """Four 45 s 640x360 videos with a cut every 3-6 s."""
    for v in range(4):
        scenes = [Scene(25 * (3 + (i * 7 + v) % 4), seed=100 * v + i) for i in range(10)]
        write_video(os.path.join(folder, f"gen{v}.mp4"), scenes, fps=25, size=(640, 360))
    return folder


BARE = "(a) bare threaded PyAV decode"
SCENEDETECT = "(b) PySceneDetect detect(ContentDetector)"
OFF = "(c) vidcorpus build, clips off"
DEFAULT = "(c) vidcorpus build, clips copy (default)"


def speed(inputs: str, tmp: str, rounds: int) -> None:
    cfg = load_config(None, BUILD_ONLY)
    off_cfg = load_config(None, BUILD_ONLY + ["clips.mode=off"])
    paths, _ = discover(inputs, cfg.input)
    bare_decode(paths[:2])  # warm the page cache and libraries
    runs = {
        BARE: lambda _: bare_decode(paths),
        SCENEDETECT: lambda _: pyscenedetect(paths),
        OFF: lambda r: build(inputs, os.path.join(tmp, f"off{r}"), off_cfg),
        DEFAULT: lambda r: build(inputs, os.path.join(tmp, f"copy{r}"), cfg),
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for r in range(rounds):
        for name, run in runs.items():
            wall, cpu, results[name] = measured(run, r)
            walls[name].append(wall)
            cpus[name].append(cpu)
    wall = {name: statistics.median(v) for name, v in walls.items()}
    cpu = {name: statistics.median(v) for name, v in cpus.items()}
    ratio = {name: statistics.median(w / b for w, b in zip(v, walls[BARE])) for name, v in walls.items()}
    frames = results[BARE]
    print(f"videos: {len(paths)} files, {frames} frames, {results[DEFAULT].counts['clips']} clips; "
          f"medians of {rounds} round-robin rounds")
    print(f"{'run':44s} {'seconds':>8s} {'frames/s':>9s} {'÷ (a)':>7s} {'cpu s':>7s} {'÷ (a)':>7s}  each round ÷ (a)")
    for name in runs:
        per_round = " ".join(f"{w / b:.2f}" for w, b in zip(walls[name], walls[BARE]))
        print(f"{name:44s} {wall[name]:8.2f} {frames / wall[name]:9.0f} {ratio[name]:7.2f} "
              f"{cpu[name]:7.2f} {cpu[name] / cpu[BARE]:7.2f}  {per_round}")
    print(f"target (c)/(a) <= 1.30: clips off {ratio[OFF]:.2f}, default {ratio[DEFAULT]:.2f}; "
          f"(b)/(a) = {ratio[SCENEDETECT]:.2f}")


PEAK_RSS = """
import resource, sys
from vidcorpus.config import load_config
from vidcorpus.pipelines.build import build
build(sys.argv[1], sys.argv[2], load_config(None, sys.argv[3:]))
try:  # this process's own high-water mark
    print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_rss_of_build(video_dir: str, out: str) -> int:
    """Peak RSS (bytes) of a build in a fresh process. Measured inside it: on Linux a child's
    ru_maxrss starts from its parent's RSS at fork, so after the speed runs it would report this
    process's memory instead."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, video_dir, out, *BUILD_ONLY],
                            check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1])


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
    parser.add_argument("--rounds", type=int, default=3, help="round-robin repetitions of the speed runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            real = os.environ.get("VIDCORPUS_REALVIDEOS")
            if real:
                print("speed on real videos from VIDCORPUS_REALVIDEOS")
                inputs = real
            else:
                print("speed on generated videos (set VIDCORPUS_REALVIDEOS for real ones)")
                inputs = generated_inputs(tempfile.mkdtemp(dir=tmp))
            speed(inputs, tmp, args.rounds)
        if not args.skip_memory:
            memory(tmp, args.long_minutes)


if __name__ == "__main__":
    main()
