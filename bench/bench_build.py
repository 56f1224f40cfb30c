"""Benchmark the local build against baselines measured in the same run.

Speed, one process, same videos:
  (a) bare single-pass threaded PyAV decode (the decoder vidcorpus uses),
  (b) PySceneDetect's own `detect(path, ContentDetector())`,
  (c) `vidcorpus build` with no CLIP or LLM (neither is on by default), as stages are added:
      analysis only (clip MP4s and tasks off: the scan), + clip MP4s (`copy`), + tasks with
      written probes (the default build);
  and a row per stage (scan, clips, probes): what adding it cost, wall and CPU seconds.
Targets: analysis only <= 1.3 x (a) and faster than (b); the default build <= 3.0 x (a) (goal 2.0).
Wall times on a shared machine swing by 10 % from run to run, so the runs go round-robin
`--rounds` times: seconds are medians, and each ratio is the median of the rounds' ratios (a run
against the bare decode of its own round). CPU seconds (user + system, all threads) are printed
too, as the steadier measure of the work each run does.

Memory: peak RSS of the default build (fresh process) on generated 720p videos of 1 minute and
of `--long-minutes` (20, and 60 when asked: `--long-minutes 20 60`); target ratio <= 1.2.

Videos: VIDCORPUS_REALVIDEOS (a folder of real files) when set, else generated ones.
    .venv/bin/python bench/bench_build.py [--skip-memory] [--long-minutes 20 60] [--rounds 3]
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

DEFAULT_BUILD = ["runner.progress=false", "clip.enabled=false", "llm.enabled=false"]
ANALYSIS_ONLY = DEFAULT_BUILD + ["clips.mode=off", "tasks.enabled=false"]
WITH_CLIPS = DEFAULT_BUILD + ["tasks.enabled=false"]


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
ANALYSIS = "(c) build, analysis only (clips, tasks off)"
CLIPS = "(c) build + clip MP4s (copy), tasks off"
DEFAULT = "(c) build, default (+ tasks, written probes)"
STAGES = {"  stage scan (= analysis only)": (ANALYSIS, None), "  stage clips (+ clip MP4s)": (CLIPS, ANALYSIS),
          "  stage probes (+ tasks)": (DEFAULT, CLIPS)}


def speed(inputs: str, tmp: str, rounds: int) -> None:
    configs = {ANALYSIS: load_config(None, ANALYSIS_ONLY), CLIPS: load_config(None, WITH_CLIPS),
               DEFAULT: load_config(None, DEFAULT_BUILD)}
    paths, _ = discover(inputs, configs[DEFAULT].input)
    bare_decode(paths[:2])  # warm the page cache and libraries
    runs = {BARE: lambda _: bare_decode(paths), SCENEDETECT: lambda _: pyscenedetect(paths)}
    for name, cfg in configs.items():
        runs[name] = lambda r, name=name, cfg=cfg: build(inputs, os.path.join(tmp, f"{len(name)}-{r}"), cfg)
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    hashes: dict[str, set[str]] = {name: set() for name in configs}
    for r in range(rounds):
        for name, run in runs.items():
            wall, cpu, results[name] = measured(run, r)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"  round {r + 1}: {name}: {wall:.2f} s, {cpu:.2f} cpu s", flush=True)
            if name in hashes:
                hashes[name].add(results[name].dataset_hash)
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
    for stage, (run, before) in STAGES.items():
        walls_added = [w - (walls[before][i] if before else 0.0) for i, w in enumerate(walls[run])]
        cpus_added = [c - (cpus[before][i] if before else 0.0) for i, c in enumerate(cpus[run])]
        added, added_cpu = statistics.median(walls_added), statistics.median(cpus_added)
        print(f"{stage:44s} {added:8.2f} {'':9s} {added / wall[BARE]:7.2f} "
              f"{added_cpu:7.2f} {added_cpu / cpu[BARE]:7.2f}")
    if rounds > 1:
        print("builds byte-identical across rounds (dataset hash): "
              + ", ".join(f"{name.split(', ')[-1]} {'yes' if len(h) == 1 else 'NO'}" for name, h in hashes.items()))
    print(f"targets: analysis only <= 1.30 x (a): {ratio[ANALYSIS]:.2f}; default <= 3.00 x (a) (goal 2.00): "
          f"{ratio[DEFAULT]:.2f}; (b)/(a) = {ratio[SCENEDETECT]:.2f}")


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
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, video_dir, out, *DEFAULT_BUILD],
                            check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1])


def memory(tmp: str, long_minutes: list[float]) -> None:
    sizes = {}
    for minutes in [1.0, *long_minutes]:
        label = f"{minutes:g} min"
        folder = os.path.join(tmp, f"mem-{minutes:g}")
        os.makedirs(folder)
        scene_frames = 24 * 8
        count = max(1, round(minutes * 60 * 24 / scene_frames))
        t, _ = timed(write_video, os.path.join(folder, "long.mp4"), [Scene(scene_frames, i) for i in range(count)],
                     24, (1280, 720))
        took, rss = timed(peak_rss_of_build, folder, os.path.join(tmp, f"out-{minutes:g}"))
        sizes[label] = rss
        print(f"720p {label:>7s}: peak RSS {rss / 2**20:7.1f} MiB  (build {took:.1f} s; generating took {t:.1f} s)")
    short = sizes["1 min"]
    print("target peak RSS ratio long/short <= 1.20: "
          + ", ".join(f"{label} {rss / short:.2f}" for label, rss in sizes.items() if label != "1 min"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--long-minutes", type=float, nargs="+", default=[20.0])
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
