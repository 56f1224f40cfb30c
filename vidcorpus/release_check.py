"""Check a release against its own manifest and schemas before anyone trains on it or publishes it.

`validate_release` re-hashes every file the manifest lists, looks for files it does not list,
re-derives the dataset hash, compares every Parquet file's schema with the declared Arrow schema
(names, types, nullability), checks every row with its table's record rules, and opens every
shard to see that its members belong to rows of its table (clips, or the sft/rl task rows) and
that each sample's JSON equals its row.

Files outside the manifest by design: `README.md` (the dataset card) and `report.html` are
written after the manifest, from it, so they cannot be listed in it without a cycle; they are
derived views that can be regenerated at any time, and validation ignores them. `.work/` is
the build's staging area and never part of a release.

The readers here (`read_manifest`, `table_paths`, `read_table`, `shard_members`) are shared
with the dataset card, the report and the Hub upload, so every tool sees a release the same way.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter, defaultdict
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vidcorpus import storage
from vidcorpus.pipelines.build import WORK_DIR
from vidcorpus.pipelines.release import RELEASE_DIRS, SAMPLE_TABLES
from vidcorpus.schemas import TABLES, RecordError, check_record
from vidcorpus.schemas.tables import with_embedding_dim
from vidcorpus.sinks.manifest import MANIFEST, dataset_hash, file_entry
from vidcorpus.tasks.schemas import TABLE_SCHEMAS as TASK_SCHEMAS
from vidcorpus.tasks.schemas import row_problems

CARD = "README.md"
REPORT = "report.html"
DERIVED_FILES = (CARD, REPORT)
"""Top-level files made from the manifest after it is written; never listed in it."""
CHECKED_DIRS = RELEASE_DIRS
"""Every file under these folders (those a build owns) must be listed in the manifest."""
PRIMARY_KEYS = {"videos": "video_id", "clips": "clip_id", "annotations": "ann_id", "sft": "sample_id",
                "rl": "sample_id"}
MAX_ROW_PROBLEMS = 20
"""Row problems reported per file; the rest are counted, so one bad table cannot flood the report."""


# --- reading a release ---------------------------------------------------------------------------

def read_manifest(root: str) -> dict[str, Any]:
    return json.loads(storage.read_bytes(storage.join(root, MANIFEST)))


def release_version(manifest: dict[str, Any]) -> str:
    """The manifest's `version`, or `v` + the first 12 hex digits of the dataset hash."""
    return str(manifest.get("version") or f"v{manifest['dataset_hash'][:12]}")


def release_title(manifest: dict[str, Any]) -> str:
    """`<name> <version>` for a named release, else `vidcorpus release <version>`."""
    return f"{manifest.get('name') or 'vidcorpus release'} {release_version(manifest)}"


def table_schemas() -> dict[str, pa.Schema]:
    """Every declared table schema: the core tables and the task exports."""
    return {**TABLES, **TASK_SCHEMAS}


def table_of(relpath: str) -> str | None:
    """The table a release file belongs to: `data/<table>/*.parquet` or `failures/*.parquet`."""
    parts = relpath.split("/")
    if not parts[-1].endswith(".parquet"):
        return None
    if parts[0] == "failures" and len(parts) == 2:
        return "failures"
    if parts[0] == "data" and len(parts) == 3:
        return parts[1]
    return None


def table_paths(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Table name -> its Parquet files in the manifest, sorted, tables in name order."""
    tables: dict[str, list[str]] = defaultdict(list)
    for entry in manifest["files"]:
        table = table_of(entry["path"])
        if table:
            tables[table].append(entry["path"])
    return {name: sorted(paths) for name, paths in sorted(tables.items())}


def shard_paths(manifest: dict[str, Any]) -> list[str]:
    paths = (e["path"] for e in manifest["files"])
    return sorted(p for p in paths if p.startswith("shards/") and p.endswith(".tar"))


def read_parquet_file(root: str, relpath: str, columns: list[str] | None = None) -> pa.Table:
    with storage.open_read(storage.join(root, relpath)) as f:
        return pq.read_table(pa.BufferReader(f.read()), columns=columns)


def read_table(root: str, manifest: dict[str, Any], table: str,
               columns: list[str] | None = None) -> pa.Table | None:
    """All files of one table concatenated (only `columns` that exist, when given), or None when
    the release has no such table."""
    paths = table_paths(manifest).get(table)
    if not paths:
        return None
    if columns is not None:
        with storage.open_read(storage.join(root, paths[0])) as f:
            present = pq.read_schema(f).names
        columns = [c for c in columns if c in present]
    return pa.concat_tables([read_parquet_file(root, p, columns) for p in paths])


def skipped_stages(manifest: dict[str, Any]) -> dict[str, str]:
    """Stage -> reason, from the manifest's `skipped_stages` (a mapping, or a bare list of names)."""
    skipped = manifest.get("skipped_stages") or {}
    return {name: "" for name in skipped} if isinstance(skipped, list) else dict(skipped)


def shard_members(root: str, relpath: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of one tar shard, streamed in file order (works for remote files too)."""
    with storage.open_read(storage.join(root, relpath)) as f:
        with tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if member.isfile():
                    data = tar.extractfile(member)
                    yield member.name, data.read() if data else b""


def sample_key(member: str) -> str:
    """WebDataset sample key of a member: the name up to its first dot (clip ids hold no dots)."""
    return member.split("/")[-1].split(".", 1)[0]


def list_files(root: str, folder: str) -> list[str]:
    """Paths relative to `root` of every file under `folder`, through Beam FileSystems."""
    base = storage.join(root, folder)
    matched = FileSystems.match([storage.join(base, "**")])[0].metadata_list
    prefix = root.rstrip("/") + "/"
    return sorted(m.path[len(prefix):] if m.path.startswith(prefix) else m.path for m in matched)


# --- validation ----------------------------------------------------------------------------------

def validate_release(release_dir: str) -> list[str]:
    """Every problem found in a release, each naming the file and what differs; empty means valid."""
    root = release_dir.rstrip("/")
    try:
        manifest = read_manifest(root)
    except (OSError, ValueError) as exc:
        return [f"{MANIFEST}: cannot be read: {exc}"]
    problems = _manifest_shape_problems(manifest)
    if problems:
        return problems
    present: set[str] = set()
    problems += _file_problems(root, manifest, present)
    problems += _unlisted_problems(root, manifest)
    problems += _hash_problems(manifest)
    tables, table_problems = _check_tables(root, manifest, present)
    problems += table_problems
    problems += _count_problems(manifest, tables)
    problems += _reference_problems(tables)
    problems += _shard_problems(root, manifest, present, tables)
    return problems


def _manifest_shape_problems(manifest: Any) -> list[str]:
    if not isinstance(manifest, dict):
        return [f"{MANIFEST}: top level is not an object"]
    missing = [key for key in ("files", "dataset_hash") if key not in manifest]
    if missing:
        return [f"{MANIFEST}: missing keys {missing}"]
    bad = [i for i, e in enumerate(manifest["files"])
           if not isinstance(e, dict) or not {"path", "bytes", "sha256"} <= set(e)]
    return [f"{MANIFEST}: files[{i}] needs path, bytes and sha256" for i in bad]


def _file_problems(root: str, manifest: dict[str, Any], present: set[str]) -> list[str]:
    """Size and sha256 of every listed file; `present` collects those that exist."""
    problems = []
    counts = Counter(e["path"] for e in manifest["files"])
    problems += [f"{MANIFEST}: {path} is listed {n} times" for path, n in sorted(counts.items()) if n > 1]
    for entry in manifest["files"]:
        path = entry["path"]
        if path.startswith(f"{WORK_DIR}/") or path in DERIVED_FILES or path == MANIFEST:
            problems.append(f"{MANIFEST}: {path} must not be listed (not part of a release's checksummed files)")
            continue
        if not storage.exists(storage.join(root, path)):
            problems.append(f"{path}: listed in {MANIFEST} but missing")
            continue
        present.add(path)
        actual = file_entry(root, path)
        if actual["bytes"] != entry["bytes"]:
            problems.append(f"{path}: size is {actual['bytes']} bytes, {MANIFEST} says {entry['bytes']}")
        if actual["sha256"] != entry["sha256"]:
            problems.append(f"{path}: sha256 is {actual['sha256']}, {MANIFEST} says {entry['sha256']}")
    return problems


def _unlisted_problems(root: str, manifest: dict[str, Any]) -> list[str]:
    listed = {e["path"] for e in manifest["files"]}
    return [f"{path}: not listed in {MANIFEST} (stray file)"
            for folder in CHECKED_DIRS for path in list_files(root, folder) if path not in listed]


def _hash_problems(manifest: dict[str, Any]) -> list[str]:
    expected = dataset_hash(manifest["files"])
    if manifest["dataset_hash"] != expected:
        return [f"{MANIFEST}: dataset_hash is {manifest['dataset_hash']}, its files hash to {expected}"]
    return []


def _check_tables(root: str, manifest: dict[str, Any], present: set[str]
                  ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Schema and rows of every table; returns the rows of tables whose files were all readable."""
    schemas = table_schemas()
    splits = sorted(((manifest.get("config") or {}).get("shards") or {}).get("splits") or {}) or None
    tables: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    for table, paths in table_paths(manifest).items():
        schema = schemas.get(table)
        if schema is None:
            problems.append(f"{paths[0]}: no declared schema for table {table!r}")
            continue
        rows: list[dict[str, Any]] = []
        complete = True
        for path in paths:
            if path not in present:
                complete = False
                continue
            try:
                data = read_parquet_file(root, path)
            except (OSError, pa.ArrowException) as exc:
                problems.append(f"{path}: not a readable Parquet file: {exc}")
                complete = False
                continue
            differences = schema_differences(data.schema, written_schema(schema, data.schema))
            problems += [f"{path}: {d}" for d in differences]
            if differences:
                complete = False
                continue
            file_rows = data.to_pylist()
            problems += _row_problems(path, table, file_rows, splits)
            rows += file_rows
        problems += _duplicate_key_problems(table, rows)
        if complete:
            tables[table] = rows
    return tables, problems


def written_schema(declared: pa.Schema, actual: pa.Schema) -> pa.Schema:
    """The declared schema as a writer stores it: an `embedding` column is a fixed-size list
    whose width is the model's, so the width is taken from the file (any width, one per file)."""
    if "embedding" in declared.names and "embedding" in actual.names:
        found = actual.field("embedding").type
        if pa.types.is_fixed_size_list(found):
            return with_embedding_dim(declared, found.list_size)
    return declared


def schema_differences(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """What separates a file's schema from the declared one: columns, types (nested nullability
    included) and top-level nullability; schema metadata is ignored."""
    differences = [f"missing column {name!r}" for name in expected.names if name not in actual.names]
    differences += [f"unexpected column {name!r}" for name in actual.names if name not in expected.names]
    for field in expected:
        if field.name not in actual.names:
            continue
        found = actual.field(field.name)
        if not found.type.equals(field.type):
            differences.append(f"column {field.name!r} has type {found.type}, expected {field.type}")
        elif found.nullable != field.nullable:
            differences.append(f"column {field.name!r} has nullable={found.nullable}, expected {field.nullable}")
    if not differences and actual.names != expected.names:
        differences.append(f"columns are in order {actual.names}, expected {expected.names}")
    return differences


def _row_problems(path: str, table: str, rows: list[dict[str, Any]], splits: list[str] | None) -> list[str]:
    problems = []
    key = PRIMARY_KEYS.get(table)
    for i, row in enumerate(rows):
        label = f"row {i}" + (f" ({key}={row.get(key)})" if key and key in row else "")
        if table in TABLES:
            try:
                check_record(table, row)
            except RecordError as exc:
                problems.append(f"{path}: {label}: {exc}")
        if table in TASK_SCHEMAS:
            problems += [f"{path}: {label}: {p}" for p in row_problems(table, row, splits)]
    if len(problems) > MAX_ROW_PROBLEMS:
        problems = problems[:MAX_ROW_PROBLEMS] + [f"{path}: {len(problems) - MAX_ROW_PROBLEMS} more row problems"]
    return problems


def _duplicate_key_problems(table: str, rows: list[dict[str, Any]]) -> list[str]:
    key = PRIMARY_KEYS.get(table)
    if not key or not rows or key not in rows[0]:
        return []
    counts = Counter(row[key] for row in rows)
    duplicates = sorted(k for k, n in counts.items() if n > 1)
    return [f"table {table}: {key} {d!r} appears {counts[d]} times" for d in duplicates[:MAX_ROW_PROBLEMS]]


def _count_problems(manifest: dict[str, Any], tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    counts = manifest.get("counts") or {}
    return [f"{MANIFEST}: counts.{table} is {counts[table]}, table {table} has {len(rows)} rows"
            for table, rows in tables.items()
            if isinstance(counts.get(table), int) and counts[table] != len(rows)]


def _reference_problems(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every clip belongs to a video of the videos table."""
    if "clips" not in tables or "videos" not in tables:
        return []
    videos = {v["video_id"] for v in tables["videos"]}
    orphans = sorted({c["video_id"] for c in tables["clips"]} - videos)
    return [f"table clips: video_id {v!r} is not in table videos" for v in orphans[:MAX_ROW_PROBLEMS]]


def shard_table(relpath: str) -> str:
    """The table whose rows a shard carries: `<table>-<split>-N.tar` for task samples (JSON only),
    `<split>-N.tar` for clips (JSON, keyframe JPEGs, MP4)."""
    prefix = relpath.split("/")[-1].split("-", 1)[0]
    return prefix if prefix in SAMPLE_TABLES else "clips"


def _shard_problems(root: str, manifest: dict[str, Any], present: set[str],
                    tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every shard is a readable tar whose members belong to rows of its table, with each sample's
    JSON equal to its row; clip shards hold exactly the clips the clips table assigns to them, and
    every task row is in some shard of its table."""
    problems: list[str] = []
    seen: dict[str, set[str]] = defaultdict(set)
    for path in shard_paths(manifest):
        if path not in present:
            continue
        table = shard_table(path)
        try:
            members = list(shard_members(root, path))
        except (tarfile.TarError, OSError, EOFError) as exc:
            problems.append(f"{path}: not a readable tar: {exc}")
            continue
        if table not in tables:
            problems.append(f"{path}: not checked against table {table}, which is missing or unreadable")
            continue
        key_column = PRIMARY_KEYS[table]
        rows = {row[key_column]: row for row in tables[table]}
        problems += _member_problems(path, table, members, rows)
        seen[table] |= {sample_key(name) for name, _ in members if name.endswith(".json")}
    listed = {p.split("/")[-1] for p in shard_paths(manifest)}
    clips = tables.get("clips") or []
    problems += [f"table clips: clip {c['clip_id']!r} is assigned to shard {c['shard']!r}, which the release lacks"
                 for c in clips if c.get("shard") and c["shard"] not in listed][:MAX_ROW_PROBLEMS]
    for table in SAMPLE_TABLES:
        key_column = PRIMARY_KEYS[table]
        missing = sorted(row[key_column] for row in tables.get(table) or [] if row[key_column] not in seen[table])
        problems += [f"table {table}: {key_column} {m!r} is in no shard" for m in missing[:MAX_ROW_PROBLEMS]]
    return problems


def _member_problems(path: str, table: str, members: list[tuple[str, bytes]],
                     rows: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    name = path.split("/")[-1]
    keys = {sample_key(m) for m, _ in members}
    for member, data in members:
        key = sample_key(member)
        if key not in rows:
            problems.append(f"{path}: member {member!r} belongs to no row of table {table}")
        elif member.endswith(".json") and _json_of(data) != rows[key]:
            problems.append(f"{path}: member {member!r} differs from its row in table {table}")
    problems = problems[:MAX_ROW_PROBLEMS]
    jsons = {sample_key(m) for m, _ in members if m.endswith(".json")}
    problems += [f"{path}: sample {k!r} has no {k}.json member" for k in sorted(keys - jsons) if k in rows]
    if table == "clips":
        problems += [f"{path}: holds clip {k!r}, which table clips assigns to shard {rows[k].get('shard')!r}"
                     for k in sorted(keys) if k in rows and rows[k].get("shard") != name]
        problems += [f"{path}: clip {cid!r} of table clips has no {cid}.json member"
                     for cid, clip in sorted(rows.items()) if clip.get("shard") == name and cid not in jsons]
    return problems


def _json_of(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
