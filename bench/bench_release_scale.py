"""Release stage at two corpus sizes: peak memory of the largest worker and time per clip.

Synthetic staged results are written straight into a work directory (a video row, clip rows
with a keyframe JPEG each, and CLIP frame rows with 512-d float32 embeddings in Arrow IPC,
two frames per clip), then the real release stage (`pipelines.build.write_release`: staged
rows, index, layout, keyed shard and Parquet writes, manifest) runs on the DirectRunner in
`multi_processing` mode with 2 workers. A thread samples the RSS of every process the run
starts (psutil); the largest worker's peak is reported per size, with their ratio (target:
at most 1.2x) and the time per clip (target: flat). A dry-run estimate for 10 million clips
follows, from the measured per-clip costs and index entry size.

Run:
    PYTHONPATH=. .venv/bin/python bench/bench_release_scale.py [--sizes 10000 200000]
        [--clips-per-video 20] [--workers 2] [--dir /tmp/release-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402

from vidcorpus.config import BuildConfig  # noqa: E402
from vidcorpus.pipelines.build import write_release  # noqa: E402
from vidcorpus.pipelines.index import stage_release_rows  # noqa: E402
from vidcorpus.pipelines.staging import (RESULT, staged_table_uri, staging_dir,  # noqa: E402
                                         video_result)
from vidcorpus.release.ipc import write_ipc  # noqa: E402
from vidcorpus.runners import local_runner, pipeline_options  # noqa: E402
from vidcorpus.schemas import TABLES  # noqa: E402

DIM = 512
FRAMES_PER_CLIP = 2
CLIP_S = 4.0
TABLES_WRITTEN = ("videos", "clips", "frames", "failures")
STAGES_OFF = {"annotate": "bench", "tasks": "bench"}
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb004300") + bytes(range(64)) + b"\xff\xd9"


def video_row(video_id: str, clips: int) -> dict:
    return {"video_id": video_id, "uri": f"bench/{video_id}.mp4", "split": "train", "license": None,
            "size_bytes": 10_000_000, "container": "mp4", "duration_s": clips * CLIP_S, "fps": 25.0,
            "is_vfr": False, "num_frames": int(clips * CLIP_S * 25), "width": 1280, "height": 720,
            "display_width": 1280, "display_height": 720, "rotation": 0, "sample_aspect_ratio": 1.0,
            "video_codec": "h264", "pix_fmt": "yuv420p", "bit_rate": 2_000_000, "start_time_s": 0.0,
            "has_audio": False, "audio_codec": None, "audio_sample_rate": None, "audio_channels": None,
            "audio_streams": [],
            "num_clips": clips, "dup_of": None, "overlap_s": None, "transitions": []}


def clip_row(video_id: str, index: int) -> dict:
    start = index * CLIP_S
    return {"clip_id": f"{video_id}_{index:04d}", "video_id": video_id, "index": index, "split": "train",
            "start_s": start, "end_s": start + CLIP_S, "duration_s": CLIP_S, "start_frame": index * 100,
            "end_frame": index * 100 + 100, "detector": "content+clip", "mean_motion": 1.5,
            "mean_brightness": 100.0, "mean_sharpness": 200.0, "clip_mode": "reencode", "shard": None,
            "keyframes": [{"timestamp_s": start + 1.0, "frame_index": index * 100 + 25, "brightness": 100.0,
                           "sharpness": 200.0, "mode": "diverse", "score": 1.0}],
            "embedding": None, "dup_group": None, "is_transition": False}


def frames_table(video_id: str, clips: int, rng: np.random.Generator) -> pa.Table:
    n = clips * FRAMES_PER_CLIP
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embedding = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * DIM, pa.int32()), pa.array(vectors.ravel()))
    clip_index = np.repeat(np.arange(clips), FRAMES_PER_CLIP)
    times = clip_index * CLIP_S + np.tile(np.arange(FRAMES_PER_CLIP) + 0.5, clips)
    columns = {
        "clip_id": pa.array([f"{video_id}_{i:04d}" for i in clip_index]),
        "video_id": pa.array([video_id] * n),
        "timestamp_s": pa.array(times, pa.float64()),
        "frame_index": pa.array((times * 25).astype(np.int64)),
        "brightness": pa.array(np.full(n, 100.0, np.float32)),
        "sharpness": pa.array(np.full(n, 200.0, np.float32)),
        "embedding": embedding,
        "scores": pa.array([[] for _ in range(n)], pa.list_(pa.float32())),
    }
    return pa.Table.from_pydict(columns, schema=TABLES["frames"])


def stage_corpus(work_dir: str, clips_total: int, per_video: int) -> list[str]:
    """Staged results of `clips_total` clips, as the segment stage leaves them."""
    rng = np.random.default_rng(0)
    ids = []
    for v in range(clips_total // per_video):
        video_id = f"v{v:015x}"
        folder = Path(staging_dir(work_dir, video_id))
        folder.mkdir(parents=True, exist_ok=True)
        clips = [clip_row(video_id, i) for i in range(per_video)]
        files = {}
        for clip in clips:
            (folder / f"{clip['clip_id']}_0.jpg").write_bytes(JPEG)
            files[clip["clip_id"]] = {"jpg": [f"{clip['clip_id']}_0.jpg"], "bytes": len(JPEG)}
        size = write_ipc(frames_table(video_id, per_video, rng), TABLES["frames"],
                         staged_table_uri(work_dir, video_id, "frames"))
        result = video_result(video_row(video_id, per_video), clips, files)
        result["staged_tables"] = {"frames": {"rows": per_video * FRAMES_PER_CLIP, "bytes": size, "dims": [DIM]}}
        (folder / RESULT).write_text(json.dumps(result, sort_keys=True))
        ids.append(video_id)
    return ids


def load_result(video_id: str, work_dir: str) -> dict:
    return json.loads(Path(staging_dir(work_dir, video_id), RESULT).read_text())


class PeakRss:
    """Peak resident memory of this process and of every process it starts, sampled."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.peaks, self.main_peak, self.commands = every_s, {}, 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            self.main_peak = max(self.main_peak, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)
                    self.commands.setdefault(child.pid, " ".join(child.cmdline())[-60:])
                except psutil.Error:
                    pass
            time.sleep(self.every_s)

    @property
    def largest_worker(self) -> int:
        return max(self.peaks.values(), default=0)


def run_release(work_dir: str, output: str, ids: list[str], workers: int) -> dict:
    cfg = BuildConfig.model_validate({"runner": {"mode": "multi_processing", "workers": workers},
                                      "clip": {"enabled": True}, "llm": {"enabled": False}})
    options = pipeline_options("direct", "multi_processing", workers)
    start = time.perf_counter()
    with PeakRss() as rss:
        p = beam.Pipeline(runner=local_runner("direct", options), options=options)
        results = (p | "Ids" >> beam.Create(ids) | "Spread" >> beam.Reshuffle()
                   | "Load" >> beam.Map(load_result, work_dir))
        write_release(p, results, output, work_dir, cfg, STAGES_OFF, TABLES_WRITTEN, {})
        p.run().wait_until_finish()
    seconds = time.perf_counter() - start
    if os.environ.get("BENCH_VERBOSE"):
        for pid, peak in sorted(rss.peaks.items()):
            print(f"  pid {pid}: {peak / 2**20:.0f} MiB  {rss.commands.get(pid)}")
    manifest = json.loads(Path(output, "manifest.json").read_text())
    return {"seconds": seconds, "worker_rss": rss.largest_worker, "main_rss": rss.main_peak,
            "workers_seen": len(rss.peaks), "counts": manifest["counts"],
            "out_bytes": sum(e["bytes"] for e in manifest["files"])}


def index_entry_bytes(work_dir: str, video_id: str) -> int:
    """Pickled size of one video's index entry (what the layout step holds per video)."""
    scratch = os.path.join(work_dir, "scratch")
    entry = stage_release_rows(load_result(video_id, work_dir), scratch, TABLES_WRITTEN)
    shutil.rmtree(scratch, ignore_errors=True)
    return len(pickle.dumps(entry))


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000], help="clips per run")
    parser.add_argument("--clips-per-video", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="/tmp/vidcorpus-release-scale")
    args = parser.parse_args(argv)

    rows = []
    for size in args.sizes:
        base = os.path.join(args.dir, str(size))
        shutil.rmtree(base, ignore_errors=True)
        work, out = os.path.join(base, "work"), os.path.join(base, "out")
        t0 = time.perf_counter()
        ids = stage_corpus(work, size, args.clips_per_video)
        staged_s = time.perf_counter() - t0
        run = run_release(work, out, ids, args.workers)
        run.update(size=size, videos=len(ids), staged_s=staged_s, entry_bytes=index_entry_bytes(work, ids[0]),
                   work_bytes=dir_bytes(work))
        rows.append(run)
        print(f"{size:>9,} clips ({len(ids):,} videos, staged in {staged_s:.0f} s): release {run['seconds']:.1f} s, "
              f"{run['seconds'] / size * 1e3:.3f} ms/clip, largest worker peak RSS {run['worker_rss'] / 2**20:.0f} MiB "
              f"({run['workers_seen']} processes), runner process {run['main_rss'] / 2**20:.0f} MiB, "
              f"{run['counts']['shards']} shards, {run['out_bytes'] / 2**20:.0f} MiB written", flush=True)
        shutil.rmtree(base, ignore_errors=True)

    first, last = rows[0], rows[-1]
    print()
    print(f"{'clips':>10} {'videos':>8} {'s':>8} {'ms/clip':>8} {'worker MiB':>11} {'runner MiB':>11}")
    for r in rows:
        print(f"{r['size']:>10,} {r['videos']:>8,} {r['seconds']:>8.1f} {r['seconds'] / r['size'] * 1e3:>8.3f} "
              f"{r['worker_rss'] / 2**20:>11.0f} {r['main_rss'] / 2**20:>11.0f}")
    rss_ratio = last["worker_rss"] / first["worker_rss"]
    time_ratio = (last["seconds"] / last["size"]) / (first["seconds"] / first["size"])
    print(f"peak RSS of the largest worker, {last['size']:,} vs {first['size']:,} clips: {rss_ratio:.2f}x "
          f"(target <= 1.2x) {'ok' if rss_ratio <= 1.2 else 'OVER'}")
    print(f"time per clip, {last['size']:,} vs {first['size']:,} clips: {time_ratio:.2f}x (target: flat)")

    target, per_video = 10_000_000, args.clips_per_video
    videos = target // per_video
    ms_per_clip = last["seconds"] / last["size"] * 1e3
    index_mib = videos * last["entry_bytes"] / 2**20
    print()
    print(f"dry-run estimate, {target:,} clips ({videos:,} videos of {per_video} clips), from the {last['size']:,}-clip run:")
    print(f"  index entry: {last['entry_bytes']} bytes pickled per video -> {index_mib:,.0f} MiB held by the layout step")
    print(f"  largest worker: ~{last['worker_rss'] / 2**20:,.0f} MiB (writers hold one file's slices) "
          f"+ {index_mib:,.0f} MiB on the worker that lays out")
    print(f"  work directory: {last['work_bytes'] / last['size'] * target / 2**30:,.0f} GiB staged; release: "
          f"{last['out_bytes'] / last['size'] * target / 2**30:,.0f} GiB")
    print(f"  time: {ms_per_clip * target / 1e3 / 3600:,.1f} h on {args.workers} local workers "
          f"({ms_per_clip:.3f} ms/clip); writes scale with workers, the layout pass is one sorted scan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
