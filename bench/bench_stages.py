"""Share of wall time per stage in a CPU build with CLIP on (ViT-B-32, random weights: the same
compute as pretrained ones), measured in one process on the in-memory runner, where stages run
one after another so their times add up to the build's.

    .venv/bin/python bench/bench_stages.py [--model ViT-B-32] [--device cpu]

Videos: VIDCORPUS_REALVIDEOS when set (first 12 files), else generated ones. Release writes
(pickled into Beam's Map steps, out of reach of these timers) fall under "everything else".
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections import defaultdict

from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines import build as build_module
from vidcorpus.pipelines import embed
from vidcorpus.pipelines.discover import discover
from vidcorpus.scoring import clip as clip_module

SPENT: dict[str, float] = defaultdict(float)


def timed(stage: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[stage] += time.perf_counter() - start
    return wrapper


def timed_generator(stage: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        it = fn(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                SPENT[stage] += time.perf_counter() - start
                return
            SPENT[stage] += time.perf_counter() - start
            yield item
    return wrapper


def instrument() -> None:
    build_module.scan_video = timed("scan (probe + decode once)", build_module.scan_video)
    embed.candidate_frames = timed_generator("clip: candidate pictures", embed.candidate_frames)
    handler = clip_module.OpenClipImageHandler
    handler.run_inference = timed("clip: model forward", handler.run_inference)
    handler.load_model = timed("clip: model load", handler.load_model)
    build_module.segment_video = timed("segment (scenes, keyframes, clip MP4s)", build_module.segment_video)


def inputs(tmp: str) -> str:
    real = os.environ.get("VIDCORPUS_REALVIDEOS")
    if real:
        folder = os.path.join(tmp, "list.txt")
        uris, _ = discover(real, load_config().input)
        with open(folder, "w") as f:
            f.write("\n".join(uris[:12]))
        return folder
    for v in range(3):
        write_video(os.path.join(tmp, f"gen{v}.mp4"), [Scene(50, 10 * v + i) for i in range(6)], size=(640, 360))
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = load_config(None, ["runner.progress=false", "llm.enabled=false", "tasks.enabled=false",
                             "clip.enabled=true", f"clip.model={args.model}", "clip.pretrained=null",
                             "clip.allow_random_weights=true", f"clip.device={args.device}", "clip.batch_size=16"])
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        source = inputs(tmp)
        start = time.perf_counter()
        summary = build_module.build(source, os.path.join(tmp, "out"), cfg)
        total = time.perf_counter() - start
    print(f"{summary.counts['videos']} videos, {summary.counts['clips']} clips, "
          f"{summary.counts.get('frames', 0)} frames embedded; build {total:.1f} s on {args.device}")
    print(f"{'stage':42s} {'seconds':>8s} {'share':>7s}")
    for stage, seconds in sorted(SPENT.items(), key=lambda kv: -kv[1]):
        print(f"{stage:42s} {seconds:8.2f} {seconds / total:7.1%}")
    rest = total - sum(SPENT.values())
    print(f"{'Beam and everything else':42s} {rest:8.2f} {rest / total:7.1%}")


if __name__ == "__main__":
    main()
