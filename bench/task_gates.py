"""What the task integrity checks find on a folder of real videos (VIDCORPUS_REALVIDEOS or argv[1]).

Builds the folder (tasks in reference mode, no clip MP4s, no CLIP or LLM), then, from the
release's videos and clips tables:
  - near-duplicate footage groups (`dup_of`, `overlap_s`) and the splits their members got;
  - NIAH probes planned, and how many each needle quality gate rejects (sources decoded again,
    around the needles only).
Counts, not timings: the output is the same on any machine for the same videos.
    .venv/bin/python bench/task_gates.py [folder] [--splits train=0.8,test=0.2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections import Counter, defaultdict

import pyarrow.parquet as pq

from vidcorpus.config import load_config
from vidcorpus.pipelines.build import build
from vidcorpus.tasks.build import build_foreign_pool
from vidcorpus.tasks.niah import plan_niah_probes
from vidcorpus.tasks.quality import gate_probes


def table(release: str, name: str) -> list[dict]:
    return pq.read_table(os.path.join(release, "data", name)).to_pylist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", default=os.environ.get("VIDCORPUS_REALVIDEOS"))
    parser.add_argument("--splits", default="train=0.8,test=0.2")
    args = parser.parse_args()
    if not args.folder:
        sys.exit("give a folder of videos (or set VIDCORPUS_REALVIDEOS)")
    logging.basicConfig(level=logging.ERROR)
    splits = "{" + ",".join(f"{k}: {v}" for k, v in (p.split("=") for p in args.splits.split(","))) + "}"
    cfg = load_config(None, ["runner.progress=false", "clip.enabled=false", "llm.enabled=false", "clips.mode=off",
                             "tasks.media_mode=reference", f"shards.splits={splits}"])
    with tempfile.TemporaryDirectory() as out:
        build(args.folder, out, cfg)
        videos, clips = table(out, "videos"), table(out, "clips")
    report_groups(videos)
    report_gates(videos, clips, cfg)


def report_groups(videos: list[dict]) -> None:
    by_id = {v["video_id"]: v for v in videos}
    groups = defaultdict(list)
    for v in videos:
        if v["dup_of"]:
            groups[v["dup_of"]].append(v)
    print(f"videos: {len(videos)}; near-duplicate groups: {len(groups)}")
    for head, copies in sorted(groups.items()):
        print(f"  {os.path.basename(by_id[head]['uri'])} [{by_id[head]['split']}, {by_id[head]['duration_s']:.1f} s]")
        for c in copies:
            print(f"    = {os.path.basename(c['uri'])} [{c['split']}, {c['duration_s']:.1f} s, "
                  f"overlap {c['overlap_s']:.1f} s]")


def report_gates(videos: list[dict], clips: list[dict], cfg) -> None:
    by_id = {v["video_id"]: v for v in videos}
    pool = build_foreign_pool(by_id, clips, [], cfg.tasks)
    clips_of = defaultdict(list)
    for clip in clips:
        clips_of[clip["video_id"]].append(clip)
    planned, kept, rejected = Counter(), Counter(), Counter()
    contrast = []
    for video_id in sorted(by_id):
        specs = plan_niah_probes(by_id[video_id], clips_of[video_id], cfg.tasks, pool)
        good, failed = gate_probes(specs, cfg.tasks.niah.gates)
        planned.update(s.kind for s in specs)
        kept.update(s.kind for s in good)
        kinds = {s.probe_id: s.kind for s in specs}
        rejected.update((kinds[p], gate) for p, gate in failed.items())
        contrast += [s.quality["contrast"] for s in good if s.kind != "foreign"]
    print(f"probes planned: {sum(planned.values())} {dict(sorted(planned.items()))}; "
          f"kept: {sum(kept.values())} {dict(sorted(kept.items()))}")
    for (kind, gate), count in sorted(rejected.items()):
        print(f"  rejected {kind:<9} {gate:<22} {count}")
    if contrast:
        print(f"  rendered boxes: WCAG contrast min {min(contrast):.2f}, median {sorted(contrast)[len(contrast) // 2]:.2f}")


if __name__ == "__main__":
    main()
