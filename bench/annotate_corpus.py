"""What the LLM annotations of a folder of videos look like, built against the local
OpenAI-compatible test server (its answers are synthetic; the requests, frames, windows,
checks and accounting are the real ones).

Prints per build: clips by length and the frames each clip's caption requests showed (count,
first/last second seen, largest unseen gap), images per request, clips per QA/CoT request,
tokens per video-minute, QA items by verifier verdict and the correct-letter histogram.

Run: .venv/bin/python bench/annotate_corpus.py <folder> [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pyarrow.parquet as pq  # noqa: E402
from llm_server import FakeLLMServer  # noqa: E402

from vidcorpus.config import load_config  # noqa: E402
from vidcorpus.pipelines.build import build  # noqa: E402

CLIP_LINE = re.compile(r"^- \S+ \[", re.MULTILINE)


def rows(out: Path, table: str) -> list[dict]:
    path = out / ("failures" if table == "failures" else f"data/{table}")
    return pq.read_table(path).to_pylist() if path.exists() else []


def request_shape(bodies: list[dict], schema: str) -> tuple[int, int, int]:
    """(requests, most images in one, most clip lines in one) for one output schema."""
    chosen = [b for b in bodies if b["response_format"]["json_schema"]["name"] == schema]
    def parts(b):
        content = b["messages"][1]["content"]
        return content if isinstance(content, list) else [{"type": "text", "text": content}]
    images = [sum(p["type"] == "image_url" for p in parts(b)) for b in chosen]
    lines = [len(CLIP_LINE.findall("\n".join(p.get("text", "") for p in parts(b)))) for b in chosen]
    return len(chosen), max(images, default=0), max(lines, default=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer() as server:
        cfg = load_config(ROOT / "configs" / "tiny.yaml",
                          ["tasks.enabled=false", f"llm.base_url={server.base_url}", *args.overrides])
        build(args.folder, tmp, cfg)
        out = Path(tmp)
        videos, clips = rows(out, "videos"), rows(out, "clips")
        annotations, failures = rows(out, "annotations"), rows(out, "failures")
        usage = json.loads((out / "manifest.json").read_text())["usage"]
        bodies = server.bodies

    minutes = sum(v["duration_s"] for v in videos) / 60
    print(f"{len(videos)} videos ({minutes:.1f} min), {len(clips)} clips, {len(server.bodies)} requests\n")
    clip_by_id = {c["clip_id"]: c for c in clips}
    print(f"{'clip length':>12} {'clips':>6} {'frames':>12} {'first s':>8} {'last s':>8} {'max gap s':>9}")
    buckets = [(0, 2), (2, 5), (5, 15), (15, 60), (60, 1e9)]
    captions = [a for a in annotations if a["kind"] == "caption"]
    for lo, hi in buckets:
        seen = []
        for a in captions:
            clip = clip_by_id[a["clip_id"]]
            if lo <= clip["duration_s"] < hi:
                times = json.loads(a["payload"])["frame_times"]
                gaps = [b - t for t, b in zip([clip["start_s"], *times], [*times, clip["end_s"]])]
                seen.append((len(times), times[0] - clip["start_s"], clip["end_s"] - times[-1], max(gaps)))
        if seen:
            counts = sorted(s[0] for s in seen)
            print(f"{f'{lo}-{hi:g} s' if hi < 1e9 else f'>{lo} s':>12} {len(seen):>6} "
                  f"{f'{counts[0]}-{counts[-1]}':>12} {max(s[1] for s in seen):>8.2f} {max(s[2] for s in seen):>8.2f} "
                  f"{max(s[3] for s in seen):>9.2f}")
    print("(first s / last s: the most any clip's first / last seen frame lies from its start / end)\n")
    print(f"{'request':>14} {'count':>6} {'max images':>10} {'max clips':>9}")
    for schema in ("clip_caption", "video_summary", "qa_set", "cot_trace", "blind_answer", "visual_answer"):
        n, images, lines = request_shape(bodies, schema)
        print(f"{schema:>14} {n:>6} {images:>10} {lines:>9}")
    tokens = usage.get("tokens_in", 0) + usage.get("tokens_out", 0)
    print(f"\ntokens per video-minute: {tokens / max(minutes, 1e-9):,.0f}\n")
    print("QA items: asked {qa_asked}, kept {qa_kept}, not written {qa_fewer_than_asked}".format(**usage))
    for check in ("duplicate", "spans", "blind", "visual"):
        print(f"  dropped by {check:<9} {usage.get(f'qa_dropped_{check}', 0):>5}")
    kept = [json.loads(a["verdicts"]) for a in annotations if a["kind"] == "qa"]
    print(f"  kept with CoT disagreeing {sum(v['cot_matches_answer'] is False for v in kept):>5}")
    letters = {k[-1]: v for k, v in sorted(usage.items()) if k.startswith("qa_letter_")}
    print(f"correct letters of kept multiple choice: {letters}")
    stages = Counter(f["stage"] for f in failures)
    print(f"failures rows by stage: {dict(sorted(stages.items()))}")


if __name__ == "__main__":
    main()
