"""`vidcorpus llm ab`: two versions of a caption prompt on the same clips of a release.

The clips of the release's first videos (by id) are captioned from their keyframes (read from
the release's shards) once with each version; the rows go to `ab/<prompt>.v<a>-v<b>.json`, and
`report.html` shows them side by side (`ab_section`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from typing import Any

from vidcorpus import storage
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.release.reader import list_files, read_manifest, read_table, shard_members

AB_DIR = "ab"


def run_ab(release_dir: str, llm: AnnotatorConfig, prompt_id: str, versions: tuple[int, int], videos: int = 3) -> str:
    """Run the comparison, write its JSON into the release and return that file's path."""
    from vidcorpus.annotators.ab import compare_caption_prompts
    from vidcorpus.annotators.video import VideoAnnotator

    root = release_dir.rstrip("/")
    manifest = read_manifest(root)
    video_rows = read_table(root, manifest, "videos")
    clip_rows = read_table(root, manifest, "clips")
    if video_rows is None or clip_rows is None:
        raise ValueError(f"{root} has no videos or clips to caption")
    chosen = sorted(video_rows.to_pylist(), key=lambda v: v["video_id"])[:videos]
    clips = defaultdict(list)
    for clip in clip_rows.to_pylist():
        clips[clip["video_id"]].append(clip)
    frames = keyframes(root, [c for v in chosen for c in clips[v["video_id"]]])
    annotator = VideoAnnotator.from_config(llm)
    try:
        rows = [row for v in chosen
                for row in compare_caption_prompts(annotator, v, clips[v["video_id"]], frames, prompt_id, versions)]
    finally:
        annotator.close()
    path = storage.join(root, AB_DIR, f"{prompt_id}.v{versions[0]}-v{versions[1]}.json")
    storage.write_bytes(path, json.dumps({"prompt_id": prompt_id, "versions": list(versions), "rows": rows},
                                         sort_keys=True, indent=1).encode())
    return path


def keyframes(root: str, clips: list[dict[str, Any]]) -> dict[str, list[tuple[float, bytes]]]:
    """clip_id -> its (time, JPEG) keyframes from the shards; each needed shard is read once."""
    times = {c["clip_id"]: [k["timestamp_s"] for k in c["keyframes"]] for c in clips}
    found: dict[str, list[tuple[float, bytes]]] = {cid: [] for cid in times}
    for shard in sorted({c["shard"] for c in clips if c.get("shard")}):
        for member, data in shard_members(root, f"shards/{shard}"):
            clip_id, _, rest = member.partition(".")
            index, _, ext = rest.partition(".")
            if clip_id in times and ext == "jpg" and index.isdigit() and int(index) < len(times[clip_id]):
                found[clip_id].append((times[clip_id][int(index)], data))
    return found


def ab_section(root: str) -> str:
    """The report's side-by-side tables, one per comparison written into the release."""
    paths = [p for p in list_files(root, AB_DIR) if p.endswith(".json")] if storage.exists(storage.join(root, AB_DIR)) else []
    parts = []
    for path in paths:
        ab = json.loads(storage.read_bytes(storage.join(root, path)))
        a, b = ab["versions"]
        head = f"<tr><th>clip</th><th>span (s)</th><th>{escape(ab['prompt_id'])} v{a}</th><th>v{b}</th></tr>"
        body = "".join(
            f"<tr><td>{escape(r['clip_id'])}</td><td>{r['start_s']:.2f}-{r['end_s']:.2f}</td>"
            + "".join(f"<td>{escape(r[side]['caption'] or r[side]['error'] or '')}"
                      f"<br><small>{r[side]['tokens_in']} in / {r[side]['tokens_out']} out</small></td>" for side in "ab")
            + "</tr>"
            for r in ab["rows"])
        parts.append(f"<h3>{escape(ab['prompt_id'])}: v{a} vs v{b}</h3>\n<table>{head}{body}</table>")
    return '<section id="ab"><h2>Prompt A/B</h2>\n' + "\n".join(parts) + "</section>" if parts else ""
