"""report.html: one self-contained page showing what a build produced, for the engineer who
decides whether the corpus is usable.

Plots and tables (the source videos by duration, resolution, frame rate, codec, VFR, rotation
and audio; clip durations with percentiles; how clip MP4s were made; scenes per video; tasks by
kind and split; shard and table sizes; annotation kinds and verdicts; token spend and its cost
at assumed list prices; failures by stage and error class, and each failure's file and message)
are inline SVG drawn here, and keyframe thumbnails are JPEGs embedded as
base64, so the page needs no network, no plotting library and no files beside it. Everything is
read from the manifest, the tables and the shards in sorted order, so a release always gives the
same bytes. Like the card, the report is derived from the manifest and is not listed in it.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

import pyarrow as pa
from PIL import Image

from vidcorpus import storage
from vidcorpus.media.transcripts import speech_coverage
from vidcorpus.publish.ab import ab_section
from vidcorpus.publish.card import flatten
from vidcorpus.publish.charts import (
    PALETTE,
    bar_chart_svg,
    escape,
    fmt,
    fmt_bytes,
    histogram_svg,
    percentiles,
    stacked_bar_chart_svg,
)
from vidcorpus.release.layout import REPORT, is_derived, shard_table
from vidcorpus.release.reader import read_manifest, read_table, release_title, shard_members, skipped_stages
from vidcorpus.sizing import Prices

THUMBNAILS = 24
THUMB_SIZE = 160
THUMB_QUALITY = 75
FAILURES_LISTED = 200
REPORT_COLUMNS = {
    "videos": ["video_id", "split", "duration_s", "fps", "is_vfr", "display_width", "display_height", "rotation",
               "video_codec", "has_audio"],
    "clips": ["clip_id", "video_id", "split", "duration_s", "start_s", "end_s", "keyframes", "clip_mode", "audio_mode",
              "shard"],
    "transcripts": ["video_id", "source", "language", "start_s", "end_s"],
    "annotations": ["kind", "clip_id", "payload", "verdicts", "tokens_in", "tokens_out"],
    "sft": ["kind", "split"],
    "rl": ["kind", "split"],
    "failures": ["uri", "item_id", "stage", "error_class", "message"],
}
"""The columns each plot reads: embeddings and task rows never need loading for the report."""
AUDIO_MODES = {"copy": "sound copied", "reencode": "sound re-encoded (AAC)", None: "no sound"}
MP4_MODES = {"copy": "stream copy", "reencode": "re-encoded", "off": "no MP4 (clips.mode off)"}
VERDICT_COLORS = {"passed": "#59a14f", "failed": "#e15759", "unchecked": "#bab0ac"}
STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; }
.note { color: #666; font-size: 13px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 170px; font-size: 11px; } figure img { display: block; max-width: 160px; }
figure .caption { color: #444; font-size: 12px; }
svg text { font-family: sans-serif; font-size: 12px; fill: #222; }
"""


def write_report(release_dir: str) -> str:
    """Write report.html into the release and return its path."""
    root = release_dir.rstrip("/")
    path = storage.join(root, REPORT)
    storage.write_bytes(path, render_report(root).encode())
    return path


def render_report(root: str) -> str:
    manifest = read_manifest(root)
    tables = {name: read_table(root, manifest, name, columns) for name, columns in REPORT_COLUMNS.items()}
    title = escape(release_title(manifest))
    sections = [
        summary_section(manifest),
        videos_section(tables.get("videos")),
        durations_section(tables.get("clips")),
        speech_section(tables.get("transcripts"), tables.get("videos"), tables.get("clips")),
        scenes_section(tables.get("videos"), tables.get("clips")),
        tasks_section(tables.get("sft"), tables.get("rl"), manifest),
        files_section(manifest),
        annotations_section(tables.get("annotations"), manifest),
        tokens_section(manifest, tables.get("annotations")),
        failures_section(tables.get("failures")),
        thumbnails_section(root, tables.get("clips"), captions_by_clip(tables.get("annotations"))),
        ab_section(root),
    ]
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{title}</h1>\n" + "\n".join(s for s in sections if s) + "\n</body>\n</html>\n")


# --- sections ------------------------------------------------------------------------------------

def summary_section(manifest: dict[str, Any]) -> str:
    rows = [(readable(key), value) for key, value in flatten(manifest.get("counts") or {})]
    skipped = skipped_stages(manifest)
    text = (f'<section id="summary"><h2>Summary</h2>\n<p class="note">dataset hash '
            f"<code>{escape(manifest.get('dataset_hash', ''))}</code>, "
            f"vidcorpus {escape(manifest.get('vidcorpus_version', '?'))}</p>\n{html_table(('what', 'count'), rows)}")
    if skipped:
        text += "\n<h3>Skipped stages</h3>\n" + html_table(("stage", "reason"), sorted(skipped.items()))
    text += _note("Time per stage is not recorded in a release (its files hold nothing that varies between "
                  "runs); bench/bench_stages.py measures it. Keyframe candidates rejected as black or blurred "
                  "are not recorded either.")
    return text + "</section>"


def readable(key: str) -> str:
    """`failures_by_stage.probe` → `failures by stage: probe`."""
    head, _, tail = key.partition(".")
    head = head.replace("_", " ")
    return f"{head}: {tail.replace('_', ' ')}" if tail else head


def videos_section(videos: pa.Table | None) -> str:
    rows = videos.to_pylist() if videos is not None else []
    if not rows:
        return '<section id="videos"><h2>Source videos</h2>\n' + _note("No videos.") + "</section>"
    durations = [v["duration_s"] for v in rows if v.get("duration_s") is not None]
    breakdowns = {
        "resolution (display)": [f"{v['display_width']}×{v['display_height']}" for v in rows],
        "frame rate": [f"{fmt(round(v['fps'], 2))} fps" if v.get("fps") else "unknown" for v in rows],
        "codec": [v.get("video_codec") or "unknown" for v in rows],
        "frame timing": ["variable (VFR)" if v.get("is_vfr") else "constant" for v in rows],
        "rotation": [f"{v.get('rotation') or 0}°" for v in rows],
        "audio": ["with audio" if v.get("has_audio") else "no audio" for v in rows],
        "split": [v.get("split") or "?" for v in rows],
    }
    parts = [histogram_svg(durations, "video duration (s)", "videos"), percentile_table(durations, "s")]
    for title, values in breakdowns.items():
        parts.append(f"<h3>By {escape(title)}</h3>\n" + bar_chart_svg(_by_count(Counter(values)), "videos"))
    return '<section id="videos"><h2>Source videos</h2>\n' + "\n".join(parts) + "</section>"


def percentile_table(values: Sequence[float], unit: str) -> str:
    stats = percentiles(values)
    return html_table([name for name, _ in stats], [[f"{fmt(round(value, 2))} {unit}" for _, value in stats]])


def tasks_section(sft: pa.Table | None, rl: pa.Table | None, manifest: dict[str, Any]) -> str:
    kinds = _column(sft, "kind") + _column(rl, "kind")
    if not kinds:
        reason = skipped_stages(manifest).get("tasks")
        body = _note("No tasks" + (f" (stage tasks skipped: {reason})." if reason else "."))
    else:
        by_table = Counter({"sft": len(_column(sft, "kind")), "rl": len(_column(rl, "kind"))})
        by_split = Counter(_column(sft, "split") + _column(rl, "split"))
        body = ("<h3>By kind</h3>\n" + bar_chart_svg(_by_count(Counter(kinds)), "samples")
                + "\n<h3>By table</h3>\n" + bar_chart_svg(_by_count(by_table), "samples")
                + "\n<h3>By split</h3>\n" + bar_chart_svg(_by_count(by_split), "samples"))
    return f'<section id="tasks"><h2>Tasks (SFT and RL samples)</h2>\n{body}</section>'


def files_section(manifest: dict[str, Any]) -> str:
    groups: dict[str, list[int]] = defaultdict(list)
    for entry in manifest.get("files") or []:
        if not is_derived(entry["path"]):  # the report cannot state its own size
            groups[_file_group(entry["path"])].append(int(entry["bytes"]))
    rows = [(group, len(sizes), fmt_bytes(sum(sizes)), fmt_bytes(max(sizes)))
            for group, sizes in sorted(groups.items())]
    body = html_table(("files", "count", "total", "largest"), rows) if rows else _note("No files.")
    return f'<section id="files"><h2>Shards and tables</h2>\n{body}</section>'


def _file_group(path: str) -> str:
    """`shards/sft-train-000001.tar` → `shards: sft, train`; `data/clips/…` → `table clips`."""
    parts = path.split("/")
    if parts[0] == "shards":
        table = shard_table(path)
        stem = parts[-1].rsplit("-", 1)[0]
        split = stem[len(table) + 1:] if table != "clips" else stem
        return f"shards: {table}, split {split}"
    if parts[0] == "data":
        return f"table {parts[1]}"
    return parts[0]

def durations_section(clips: pa.Table | None) -> str:
    durations = _column(clips, "duration_s")
    if not durations:
        body = _note("No clips.")
    else:
        modes = Counter(MP4_MODES.get(m, m or "none") for m in _column(clips, "clip_mode"))
        body = (histogram_svg(durations, "clip duration (s)", "clips") + percentile_table(durations, "s")
                + "\n<h3>Clip MP4s</h3>\n" + bar_chart_svg(_by_count(modes), "clips"))
    return f'<section id="durations"><h2>Clips</h2>\n{body}</section>'


def speech_section(transcripts: pa.Table | None, videos: pa.Table | None, clips: pa.Table | None) -> str:
    """Sound and speech: how clip MP4s carry audio, transcript lines by source and language, and
    the share of video time with speech."""
    durations = dict(zip(_column(videos, "video_id"), _column(videos, "duration_s")))
    coverage = speech_coverage(transcripts.to_pylist() if transcripts is not None else [], durations)
    sound = Counter(AUDIO_MODES.get(m, m) for m in _column(clips, "audio_mode"))
    rows = [("transcript lines", coverage["lines"]), ("videos with speech", coverage["videos_with_speech"]),
            ("seconds with speech", fmt(coverage["speech_s"])), ("share of video time with speech",
                                                                  f"{coverage['share']:.1%}")]
    body = html_table(("what", "value"), rows)
    if coverage["lines"]:
        body += ("\n<h3>Lines by source</h3>\n" + bar_chart_svg(sorted(coverage["by_source"].items()), "lines")
                 + "\n<h3>Lines by language</h3>\n" + bar_chart_svg(sorted(coverage["languages"].items()), "lines"))
    if sound:
        body += "\n<h3>Clip sound</h3>\n" + bar_chart_svg(_by_count(sound), "clips")
    return f'<section id="speech"><h2>Sound and speech</h2>\n{body}</section>'


def scenes_section(videos: pa.Table | None, clips: pa.Table | None) -> str:
    per_video = Counter(_column(clips, "video_id"))
    counts = [per_video.get(v, 0) for v in _column(videos, "video_id")]
    if not counts:
        body = _note("No videos.")
    else:
        distribution = Counter(counts)
        bars = [(f"{n} scene{'s' if n != 1 else ''}", distribution[n]) for n in sorted(distribution)]
        body = bar_chart_svg(bars, "videos") if len(bars) <= 40 else histogram_svg(counts, "scenes per video", "videos")
    return f'<section id="scenes"><h2>Scenes per video</h2>\n{body}</section>'


def annotations_section(annotations: pa.Table | None, manifest: dict[str, Any]) -> str:
    if annotations is None or annotations.num_rows == 0:
        reason = skipped_stages(manifest).get("annotate")
        body = _note("No annotations" + (f" (stage annotate skipped: {reason})." if reason else "."))
    else:
        by_kind: dict[str, Counter] = defaultdict(Counter)
        for kind, verdicts in zip(_column(annotations, "kind"), _column(annotations, "verdicts")):
            by_kind[kind][verdict_of(verdicts)] += 1
        rows = [(kind, dict(by_kind[kind])) for kind in sorted(by_kind)]
        body = stacked_bar_chart_svg(rows, list(VERDICT_COLORS), VERDICT_COLORS, "annotations")
    return f'<section id="annotations"><h2>Annotation kinds and verdicts</h2>\n{body}</section>'


def verdict_of(verdicts: str | None) -> str:
    """`passed` / `failed` from the verdicts JSON: its `passed` key where it has one (QA), else its
    checks (CoT's `matches_answer`): failed when one is false, passed when all that ran are true,
    `unchecked` when none ran."""
    try:
        found = json.loads(verdicts or "{}")
        checks = [found["passed"]] if "passed" in found else [v for v in found.values() if isinstance(v, bool)]
    except (ValueError, AttributeError, TypeError):
        checks = []
    if not checks:
        return "unchecked"
    return "passed" if all(checks) else "failed"


def tokens_section(manifest: dict[str, Any], annotations: pa.Table | None) -> str:
    parts = []
    usage = [(key, float(value)) for key, value in flatten(manifest.get("usage") or {})
             if _is_number(value) and not key.startswith("by_prompt")]
    token_bars = [(key, value) for key, value in usage if "token" in key]
    if token_bars:
        parts.append(bar_chart_svg(token_bars, "tokens"))
    other = [(key, fmt(value)) for key, value in usage if "token" not in key]
    if other:
        parts.append(html_table(("usage", "value"), other))
    if annotations is not None and {"tokens_in", "tokens_out"} <= set(annotations.column_names):
        spend: dict[str, Counter] = defaultdict(Counter)
        for kind, t_in, t_out in zip(_column(annotations, "kind"), _column(annotations, "tokens_in"),
                                     _column(annotations, "tokens_out")):
            spend[kind]["tokens_in"] += t_in or 0
            spend[kind]["tokens_out"] += t_out or 0
        rows = [(kind, dict(spend[kind])) for kind in sorted(spend)]
        colors = {"tokens_in": PALETTE[0], "tokens_out": PALETTE[1]}
        parts.append("<h3>Tokens per annotation kind</h3>\n"
                     + stacked_bar_chart_svg(rows, list(colors), colors, "tokens"))
        parts.append(cost_note(sum(s["tokens_in"] for s in spend.values()),
                               sum(s["tokens_out"] for s in spend.values())))
    by_prompt = (manifest.get("usage") or {}).get("by_prompt") or {}
    if by_prompt:
        costs = ", ".join(f"{escape(p)} ${v.get('cost_usd', 0):.4f}" for p, v in sorted(by_prompt.items()))
        parts.append(f"<p>Cost per prompt (at llm.prices): {costs}</p>")
    body = "\n".join(parts) if parts else _note("No LLM usage recorded.")
    return f'<section id="tokens"><h2>Token spend</h2>\n{body}</section>'


def cost_note(tokens_in: float, tokens_out: float) -> str:
    prices = Prices()
    usd = (tokens_in * prices.llm_input_per_million + tokens_out * prices.llm_output_per_million) / 1e6
    return _note(f"Cost of these tokens at assumed list prices (${fmt(prices.llm_input_per_million)} per million "
                 f"input, ${fmt(prices.llm_output_per_million)} per million output; vidcorpus.sizing.Prices): "
                 f"${usd:.4f}. Cache hits cost nothing on a re-run.")


def failures_section(failures: pa.Table | None) -> str:
    stages = _column(failures, "stage")
    if not stages:
        body = _note("No failures.")
    else:
        classes = _column(failures, "error_class")
        by_stage = Counter(stages)
        pairs = Counter(f"{s} · {c}" for s, c in zip(stages, classes))
        body = ("<h3>By stage</h3>\n" + bar_chart_svg(_by_count(by_stage), "failures")
                + "\n<h3>By stage and error class</h3>\n" + bar_chart_svg(_by_count(pairs), "failures")
                + "\n<h3>Each failure</h3>\n" + failures_list(failures.to_pylist()))
    return f'<section id="failures"><h2>Failures</h2>\n{body}</section>'


def failures_list(rows: list[dict[str, Any]]) -> str:
    """File (or rejected record), stage, error class and message, sorted; the first FAILURES_LISTED."""
    ordered = sorted(rows, key=lambda r: (r.get("stage") or "", r.get("uri") or "", r.get("item_id") or ""))
    shown = [(r.get("item_id") or r.get("uri") or "", r.get("stage") or "", r.get("error_class") or "",
              r.get("message") or "") for r in ordered[:FAILURES_LISTED]]
    more = (_note(f"… and {len(rows) - FAILURES_LISTED} more in failures/*.parquet.")
            if len(rows) > FAILURES_LISTED else "")
    return html_table(("file or record", "stage", "error", "message"), shown) + more


def captions_by_clip(annotations: pa.Table | None) -> dict[str, str]:
    """clip_id → its caption text, from the annotations table's caption rows."""
    found: dict[str, str] = {}
    if annotations is None:
        return found
    for kind, clip_id, payload in zip(_column(annotations, "kind"), _column(annotations, "clip_id"),
                                      _column(annotations, "payload")):
        if kind == "caption" and clip_id:
            try:
                found[clip_id] = str(json.loads(payload or "{}").get("caption") or "")
            except (ValueError, AttributeError):
                continue
    return found


def thumbnails_section(root: str, clips: pa.Table | None, captions: dict[str, str] | None = None) -> str:
    chosen = pick_thumbnail_clips(clips.to_pylist() if clips is not None else [], THUMBNAILS)
    images = first_keyframes(root, chosen)
    figures = []
    for clip in chosen:
        data = images.get(clip["clip_id"])
        if data is None:
            continue
        caption = f"{escape(clip['clip_id'])}<br>{clip['start_s']:.2f}–{clip['end_s']:.2f} s"
        if (captions or {}).get(clip["clip_id"]):
            caption += f'<br><span class="caption">{escape(captions[clip["clip_id"]])}</span>'
        source = f"data:image/jpeg;base64,{thumbnail_b64(data)}"
        figures.append(f'<figure><img alt="{escape(clip["clip_id"])}" src="{source}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    body = f'<div class="grid">{"".join(figures)}</div>' if figures else _note("No keyframes in the shards.")
    return f'<section id="thumbnails"><h2>Keyframes</h2>\n{body}</section>'


# --- thumbnails ----------------------------------------------------------------------------------

def pick_thumbnail_clips(clips: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Up to `limit` clips with a shard, taking each video's clips in turn so every video shows."""
    by_video: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for clip in sorted(clips, key=lambda c: c["clip_id"]):
        if clip.get("shard") and clip.get("keyframes"):
            by_video[clip["video_id"]].append(clip)
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < limit and any(len(v) > depth for v in by_video.values()):
        chosen += [v[depth] for _, v in sorted(by_video.items()) if len(v) > depth][:limit - len(chosen)]
        depth += 1
    return chosen


def first_keyframes(root: str, clips: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """clip_id -> bytes of its `<clip_id>.0.jpg` member; each needed shard is read once."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for clip in clips:
        wanted[clip["shard"]].add(f"{clip['clip_id']}.0.jpg")
    found: dict[str, bytes] = {}
    for shard in sorted(wanted):
        path = f"shards/{shard}"
        if not storage.exists(storage.join(root, path)):
            continue
        names = set(wanted[shard])
        for member, data in shard_members(root, path):
            if member in names:
                found[member.split(".", 1)[0]] = data
                names.discard(member)
                if not names:
                    break
    return found


def thumbnail_b64(jpeg: bytes) -> str:
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMB_QUALITY)
    return base64.b64encode(out.getvalue()).decode("ascii")


# --- small helpers -------------------------------------------------------------------------------

def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    return f'<td class="n">{fmt(value)}</td>' if _is_number(value) else f"<td>{escape(str(value))}</td>"


def _column(table: pa.Table | None, name: str) -> list[Any]:
    if table is None or name not in table.column_names:
        return []
    return table.column(name).to_pylist()


def _by_count(counter: Counter) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        try:
            float(value)
            return True
        except ValueError:
            return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)






def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'

