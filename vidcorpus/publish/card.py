"""Dataset card: the README.md that makes a release loadable and understandable on the Hub.

The YAML header declares one `configs` entry per table (`datasets.load_dataset(release, "clips")`),
the licence, task categories, size category and tags. The body, for people, says where the
videos came from and under which licences, which stages ran, which models and prompt versions
were used, what the release holds and how to load it (Parquet tables with `datasets`, shards
with `webdataset` or the `datasets` WebDataset builder).

Everything comes from the manifest and the tables, in sorted order, so one release always gives
the same card. The card is written after the manifest and is not listed in it (see
`vidcorpus.publish.validate`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import islice
from typing import Any

import pyarrow as pa
import yaml

from vidcorpus import storage
from vidcorpus.config.tasks import NiahConfig
from vidcorpus.media.transcripts import speech_coverage
from vidcorpus.release.layout import CARD, REPORT, shard_table, table_of
from vidcorpus.release.reader import (
    read_manifest,
    read_table,
    release_title,
    shard_members,
    shard_paths,
    skipped_stages,
    table_paths,
)
from vidcorpus.schemas import TABLES

CORE_STAGES = ("discover", "probe", "decode", "scenes", "keyframes", "clips")
OPTIONAL_STAGES = ("clip", "annotate", "tasks")
STAGE_TABLES = {"clip": "frames", "annotate": "annotations", "tasks": "sft"}
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
KEYFRAME_FIELD = re.compile(r"\d+\.jpg")
SHARD_MEMBERS_SCANNED = 200
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
UNKNOWN = "unknown"
PLACEHOLDER = "path/to/release"
"""Stands for the release in loading snippets; tests substitute a real path and run them."""


def write_card(release_dir: str) -> str:
    """Write README.md into the release and return its path."""
    root = release_dir.rstrip("/")
    path = storage.join(root, CARD)
    storage.write_bytes(path, render_card(root).encode())
    return path


def render_card(root: str) -> str:
    facts = ReleaseFacts.read(root)
    header = yaml.safe_dump(card_header(facts), sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{card_body(facts)}"


class ReleaseFacts:
    """What the card says about a release, read once: manifest, licences, tables, shard layout."""

    def __init__(self, manifest: dict[str, Any], videos: list[dict[str, Any]], clips: list[dict[str, Any]],
                 shard_fields: list[str]):
        self.manifest = manifest
        self.videos = videos
        self.clips = clips
        self.shard_fields = shard_fields
        self.tables = table_paths(manifest)
        self.speech: dict[str, Any] = {}
        """What the transcripts hold (`media.transcripts.speech_coverage`)."""

    @classmethod
    def read(cls, root: str) -> "ReleaseFacts":
        manifest = read_manifest(root)
        videos = _rows(read_table(root, manifest, "videos", ["video_id", "license", "duration_s", "container"]))
        clips = _rows(read_table(root, manifest, "clips", ["clip_id", "keyframes"]))
        facts = cls(manifest, videos, clips, shard_fields(root, manifest, clips))
        transcripts = _rows(read_table(root, manifest, "transcripts", ["video_id", "source", "language", "start_s",
                                                                         "end_s"]))
        facts.speech = speech_coverage(transcripts, {v["video_id"]: v["duration_s"] for v in videos})
        return facts

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest.get("counts") or {}

    @property
    def splits(self) -> list[str]:
        """Splits that have clip shards (`shards/<split>-NNNNNN.tar`)."""
        return sorted({_shard_prefix(p).split("-", 1)[0] for p in clip_shards(self.manifest)})

    @property
    def task_shards(self) -> dict[str, list[str]]:
        """Task table -> its JSON-only shards (`shards/<table>-<split>-NNNNNN.tar`)."""
        found: dict[str, list[str]] = {}
        for path in shard_paths(self.manifest):
            if shard_table(path) != "clips":
                found.setdefault(shard_table(path), []).append(path)
        return found

    @property
    def other_files(self) -> dict[str, int]:
        """Folders holding files that are neither tables nor shards (e.g. task probes) -> file count."""
        paths = [e["path"] for e in self.manifest.get("files", [])]
        found = Counter(p.split("/")[0] for p in paths
                        if "/" in p and table_of(p) is None and not p.startswith("shards/"))
        return dict(sorted(found.items()))

    @property
    def licences(self) -> Counter:
        default = (self.config.get("input") or {}).get("license")
        return Counter((v.get("license") or default or UNKNOWN) for v in self.videos)


def _rows(table: pa.Table | None) -> list[dict[str, Any]]:
    return table.to_pylist() if table is not None else []


def clip_shards(manifest: dict[str, Any]) -> list[str]:
    return [p for p in shard_paths(manifest) if shard_table(p) == "clips"]


def _shard_prefix(path: str) -> str:
    """`shards/train-000003.tar` -> `train`; `shards/sft-val-000000.tar` -> `sft-val`."""
    return path.split("/")[-1].rsplit("-", 1)[0]


def shard_fields(root: str, manifest: dict[str, Any], clips: list[dict[str, Any]]) -> list[str]:
    """WebDataset fields of a clip sample (`json`, `0.jpg`..., `mp4`): keyframe slots from the clips
    table (the most any clip has), other fields from the first members of each split's first shard."""
    first_per_split: dict[str, str] = {}
    for path in clip_shards(manifest):
        first_per_split.setdefault(_shard_prefix(path), path)
    found: set[str] = set()
    for path in first_per_split.values():
        if storage.exists(storage.join(root, path)):
            members = islice(shard_members(root, path), SHARD_MEMBERS_SCANNED)
            found |= {name.split(".", 1)[1] for name, _ in members if "." in name}
    if not found and not clips:
        return []
    slots = max((len(c.get("keyframes") or []) for c in clips), default=0)
    others = sorted(f for f in found if f != "json" and not KEYFRAME_FIELD.fullmatch(f))
    return ["json", *(f"{i}.jpg" for i in range(slots)), *others]


# --- YAML header ---------------------------------------------------------------------------------

def card_header(facts: ReleaseFacts) -> dict[str, Any]:
    return {
        "pretty_name": release_title(facts.manifest),
        "license": hub_license(facts.licences),
        "task_categories": task_categories(facts.tables),
        "size_categories": [size_category(len(facts.clips))],
        "tags": tags(facts.tables, bool(facts.shard_fields)),
        "configs": configs({t: paths for t, paths in facts.tables.items() if facts.counts.get(t) != 0}),
    }


def hub_license(licences: Counter) -> str:
    """One licence id when every video shares it; `unknown` when none is known; `other` when mixed
    or not a Hub licence id."""
    names = set(licences)
    if not names or names == {UNKNOWN}:
        return UNKNOWN
    if len(names) > 1:
        return "other"
    name = next(iter(names)).strip().lower()
    return name if LICENSE_ID.match(name) else "other"


def task_categories(tables: dict[str, list[str]]) -> list[str]:
    categories = ["video-text-to-text"]
    if {"annotations", "sft", "rl"} & set(tables):
        categories.append("visual-question-answering")
    return categories


def size_category(clips: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if clips < limit), "n>1B")


def tags(tables: dict[str, list[str]], has_shards: bool) -> list[str]:
    found = ["video", "vidcorpus", "scene-detection", "keyframes"]
    found += ["webdataset"] if has_shards else []
    found += ["clip-embeddings"] if "frames" in tables else []
    found += ["llm-annotations", "grounded-qa"] if "annotations" in tables else []
    found += ["sft"] if "sft" in tables else []
    found += ["reinforcement-learning"] if "rl" in tables else []
    return found


def config_order(tables: dict[str, list[str]]) -> list[str]:
    """Tables in the declared order (clips first: the default config), unknown tables after."""
    declared = [t for t in TABLES if t in tables]
    ordered = ["clips"] if "clips" in declared else []
    ordered += [t for t in declared if t not in ordered]
    return ordered + sorted(t for t in tables if t not in ordered)


def table_glob(table: str) -> str:
    return "failures/*.parquet" if table == "failures" else f"data/{table}/*.parquet"


def configs(tables: dict[str, list[str]]) -> list[dict[str, Any]]:
    entries = []
    for i, table in enumerate(config_order(tables)):
        entry: dict[str, Any] = {"config_name": table,
                                 "data_files": [{"split": "train", "path": table_glob(table)}]}
        if i == 0:
            entry["default"] = True
        entries.append(entry)
    return entries


# --- body for people -----------------------------------------------------------------------------

def card_body(facts: ReleaseFacts) -> str:
    sections = [
        _intro(facts), _sources(facts), _stages(facts), _models(facts), _annotations(facts), _speech(facts),
        _probe_media(facts), _counts(facts), _layout(facts),
        _schemas(facts), _loading(facts), _integrity(facts),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _intro(facts: ReleaseFacts) -> str:
    hours = sum(v.get("duration_s") or 0.0 for v in facts.videos) / 3600
    return (f"# {release_title(facts.manifest)}\n\n"
            f"Scene-level clips with scored keyframes cut from {len(facts.videos)} source videos "
            f"({hours:.2f} hours), for training long-video language models. Built by vidcorpus "
            f"{facts.manifest.get('vidcorpus_version', '?')}; every file is checksummed in `manifest.json`.")


def _sources(facts: ReleaseFacts) -> str:
    containers = Counter(v.get("container") or "?" for v in facts.videos)
    rows = [(name, str(n)) for name, n in sorted(facts.licences.items())]
    text = ("## Sources and licences\n\n"
            "Each video's licence is the `license` column of the `videos` table (with the build's "
            "`input.license` as default). The clips carry the licence of their source video; check it "
            "before redistributing or training on them.\n\n" + _table(("licence", "videos"), rows))
    if containers:
        text += "\n\nContainers: " + ", ".join(f"{name} ({n})" for name, n in sorted(containers.items())) + "."
    return text


def _stages(facts: ReleaseFacts) -> str:
    skipped = skipped_stages(facts.manifest)
    rows = [(stage, "run") for stage in CORE_STAGES]
    for stage in (*OPTIONAL_STAGES, *sorted(set(skipped) - set(OPTIONAL_STAGES))):
        if stage in skipped:
            rows.append((stage, f"skipped: {skipped[stage]}" if skipped[stage] else "skipped"))
        elif STAGE_TABLES.get(stage) in facts.tables:
            rows.append((stage, "run"))
    cfg = facts.config
    settings = [
        ("scenes.detector", (cfg.get("scenes") or {}).get("detector")),
        ("keyframes.k", (cfg.get("keyframes") or {}).get("k")),
        ("keyframes.mode", (cfg.get("keyframes") or {}).get("mode")),
        ("clips.mode", (cfg.get("clips") or {}).get("mode")),
        ("shards.splits", (cfg.get("shards") or {}).get("splits")),
    ]
    text = "## How it was built\n\n" + _table(("stage", "status"), rows)
    known = [(key, f"`{json.dumps(value, sort_keys=True)}`") for key, value in settings if value is not None]
    if known:
        text += ("\n\nMain settings (the full recipe is `config` in `manifest.json`):\n\n"
                 + _table(("setting", "value"), known))
    return text


def _models(facts: ReleaseFacts) -> str:
    parts = []
    for key, title in (("models", "Models"), ("prompts", "Prompt versions"), ("usage", "LLM usage")):
        value = facts.manifest.get(key)
        if value:
            rows = [(f"`{key}`" if key else "", shown) for key, shown in flatten(value)]
            parts.append(f"### {title}\n\n" + _table(("key", "value"), rows))
    return "## Models and prompts\n\n" + "\n\n".join(parts) if parts else ""


VERIFIER_CHECKS = ("duplicate", "spans", "blind", "visual")


def _annotations(facts: ReleaseFacts) -> str:
    """How the LLM annotations cover a video, however long, and what the verifiers dropped."""
    if "annotations" not in facts.tables:
        return ""
    llm, usage = facts.config.get("llm") or {}, facts.manifest.get("usage") or {}
    text = (
        "## How the annotations see a video\n\n"
        f"Captions see {llm.get('frames_per_s')} frames per second of every clip (at least "
        f"{llm.get('min_frames')}), spread from its first to its last second, at most {llm.get('max_frames')} "
        "per request: longer clips are captioned in windows, then merged. Each caption is written against "
        "the previous clip's caption (what changed, what is new) and is also given in the canonical entity "
        "names of the video summary. The summary is a map-reduce over all captions and says which spans "
        "it covers. QA and CoT requests see the summary plus the captions and frames of at most "
        f"{llm.get('context_clips')} consecutive clips; a video's {llm.get('qa_per_video')} questions are "
        "spread over windows from its start to its end, so any length is covered at a bounded cost per "
        "request. Multiple-choice options are shuffled per item.\n\n"
    )
    rows = [(f"dropped: {check}", str(usage.get(f"qa_dropped_{check}", 0))) for check in VERIFIER_CHECKS]
    rows.append(("questions not written (fewer than asked)", str(usage.get("qa_fewer_than_asked", 0))))
    rows.append(("kept", str(usage.get("qa_kept", 0))))
    letters = ", ".join(f"{k[-1]}: {v}" for k, v in sorted(usage.items()) if k.startswith("qa_letter_"))
    text += _table(("QA items", "count"), rows) + "\n\nEvery dropped item is a `failures` row (stage " \
        "`annotate.verify.<check>`) that holds it."
    return text + (f" Correct letters of the kept multiple-choice items: {letters}." if letters else "")


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts and lists as sorted (dotted key, value) rows."""
    if isinstance(value, dict):
        return [row for key in sorted(value) for row in flatten(value[key], f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return [row for i, v in enumerate(value) for row in flatten(v, f"{prefix}[{i}]")]
    shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return [(prefix, shown)]


def _speech(facts: ReleaseFacts) -> str:
    speech = facts.speech
    if not speech or not speech["lines"]:
        return ""
    languages = ", ".join(f"{lang} ({n})" for lang, n in speech["languages"].items())
    sources = ", ".join(f"{source} ({n})" for source, n in speech["by_source"].items())
    return (f"## Speech\n\nThe `transcripts` table holds {speech['lines']} timed lines from "
            f"{speech['videos_with_speech']} video(s), by source: {sources}; by language: {languages}. "
            f"Speech covers {speech['speech_s']:.1f} s of {speech['video_s']:.1f} s of video "
            f"({speech['share']:.1%}). Each clip's `speech` column holds the words said inside it.")


def _probe_media(facts: ReleaseFacts) -> str:
    """What written probes look like, so a trainer knows the rate and size it samples from."""
    tasks = facts.config.get("tasks") or {}
    niah = tasks.get("niah") or {}
    default = NiahConfig()  # a recipe spells out every key; the defaults serve one that does not

    def setting(key: str):
        return niah.get(key, getattr(default, key))

    folder = setting("probe_dir")
    if tasks.get("media_mode") != "written" or not facts.other_files.get(folder):
        return ""
    shortest = min(setting("needle_s")[0], setting("foreign_s")[0])
    rate = f"{niah['fps']:g} fps" if niah.get("fps") else f"the source's rate, at most {setting('max_fps'):g} fps"
    return (f"## Probe media\n\nThe {facts.other_files[folder]} NIAH probes in `{folder}/` are H.264 MP4s "
            f"(yuv420p, no audio) at {rate}, at most {setting('max_side')} px on the longest side, "
            f"x264 crf {setting('crf')} preset `{setting('preset')}`, in one-second "
            f"closed GOPs. Needles last at least {shortest:g} s; each probe's edit list (in its task rows) "
            "rebuilds it from the sources at any rate.")


def _counts(facts: ReleaseFacts) -> str:
    rows = flatten(facts.counts)
    return "## Counts\n\n" + _table(("what", "count"), rows) if rows else ""


def _layout(facts: ReleaseFacts) -> str:
    lines = ["manifest.json          config, package versions, counts, sha256 of every file, dataset hash",
             "README.md              this card (not in the manifest)"]
    for table in config_order(facts.tables):
        folder = "failures/" if table == "failures" else f"data/{table}/"
        lines.append(f"{folder:<22} {len(facts.tables[table])} Parquet file(s), table `{table}`")
    if facts.splits:
        shards = clip_shards(facts.manifest)
        fields = " ".join(f"<clip_id>.{f}" for f in facts.shard_fields)
        lines.append(f"{'shards/<split>-*.tar':<22} {len(shards)} WebDataset shard(s) of clips, splits "
                     f"{', '.join(facts.splits)}: {fields}")
    buckets = facts.manifest.get("buckets") or {}
    if buckets:
        listed = ", ".join(f"{bucket} ({count} clips)" for bucket, count in buckets.items())
        lines.append(f"{'shards/<split>-<bucket>-*.tar':<22} clip shards grouped by training bucket "
                     f"(shards.bucket_by): {listed}")
    for table, paths in sorted(facts.task_shards.items()):
        lines.append(f"{f'shards/{table}-*.tar':<22} {len(paths)} WebDataset shard(s) of table `{table}`: "
                     f"<sample_id>.json (the row)")
    for folder, count in facts.other_files.items():
        lines.append(f"{folder + '/':<22} {count} file(s) referenced by the tables")
    lines.append(f"{REPORT:<22} plots and keyframe thumbnails (not in the manifest, when present)")
    return "## Layout\n\n```\n" + "\n".join(lines) + "\n```"


def _schemas(facts: ReleaseFacts) -> str:
    schemas = TABLES
    parts = []
    for table in config_order(facts.tables):
        schema = schemas.get(table)
        if schema is None:
            continue
        rows = [(f"`{f.name}`", f"`{f.type}`", "yes" if f.nullable else "no") for f in schema]
        parts.append(f"### `{table}`\n\n" + _table(("column", "type", "nullable"), rows))
    return "## Tables\n\n" + "\n\n".join(parts) if parts else ""


def _loading(facts: ReleaseFacts) -> str:
    order = config_order(facts.tables)
    tables = "\n".join(f'{t} = datasets.load_dataset(RELEASE, "{t}", split="train")' for t in order)
    text = ("## Loading\n\n"
            "Every table is a config of this dataset. Rows of all splits sit in one `train` split; "
            "the `split` column holds each row's own split.\n\n"
            "```python\nimport datasets\n\n"
            f'RELEASE = "{PLACEHOLDER}"  # a local copy, or the Hub repo id ("user/name")\n'
            f"{tables}\n```")
    if not facts.splits:
        return text
    return text + "\n\n" + _loading_shards(facts)


def _loading_shards(facts: ReleaseFacts) -> str:
    fields = facts.shard_fields
    slots = sum(1 for f in fields if KEYFRAME_FIELD.fullmatch(f))
    extra = [f for f in fields if f != "json" and not KEYFRAME_FIELD.fullmatch(f)]
    feature_lines = ['    "json": datasets.load_dataset(RELEASE, "clips", split="train").features,']
    if slots:
        feature_lines.append(f'    **{{f"{{i}}.jpg": datasets.Image() for i in range({slots})}},')
    for name in extra:
        feature_lines.append(f'    "{name}": {_feature_of(name)},')
    feature_lines += ['    "__key__": datasets.Value("string"),', '    "__url__": datasets.Value("string"),']
    files = ", ".join(f'"{s}": f"{{RELEASE}}/shards/{s}-*.tar"' for s in facts.splits)
    first = facts.splits[0]
    stream = f'wds.WebDataset(sorted(glob.glob(f"{{RELEASE}}/shards/{first}-*.tar")), shardshuffle=False)'
    return ("Shards hold one sample per clip: its row of `clips` as JSON, its keyframes as JPEG "
            "(`0.jpg`, `1.jpg`, ...) and the clip as MP4. Stream them with `webdataset`:\n\n"
            "```python\nimport glob\nimport json\n\nimport webdataset as wds\n\n"
            f'RELEASE = "{PLACEHOLDER}"\n'
            f"for sample in {stream}:\n"
            '    clip = json.loads(sample["json"])\n'
            '    keyframes = [sample[f"{i}.jpg"] for i in range(len(clip["keyframes"]))]\n'
            "```\n\n"
            "or load them with the `datasets` WebDataset builder. Clips have different numbers of "
            "keyframes, so pass the features (missing keyframes read as None):\n\n"
            "```python\nimport datasets\n\n"
            f'RELEASE = "{PLACEHOLDER}"  # on the Hub: "hf://datasets/user/name"\n'
            "features = datasets.Features({\n" + "\n".join(feature_lines) + "\n})\n"
            f'shards = datasets.load_dataset("webdataset", data_files={{{files}}}, features=features)\n```')


def _feature_of(field: str) -> str:
    ext = field.rsplit(".", 1)[-1]
    if ext in ("mp4", "webm", "mkv", "mov"):
        return "datasets.Video(decode=False)"
    if ext in ("jpg", "jpeg", "png", "webp"):
        return "datasets.Image()"
    return 'datasets.Value("binary")'


def _integrity(facts: ReleaseFacts) -> str:
    return ("## Integrity\n\n"
            f"Dataset hash: `{facts.manifest.get('dataset_hash', '')}`. It covers the path and sha256 of "
            "every file listed in `manifest.json`. `vidcorpus validate <release>` re-checks sizes, checksums, "
            "schemas and rows; this card and `report.html` are derived from the manifest and are not listed in it.")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
