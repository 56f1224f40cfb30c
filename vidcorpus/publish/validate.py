"""Check a release against its own manifest and schemas before anyone trains on it or publishes it.

`validate_release` re-hashes every file the manifest lists (the card and the report included),
reports any other file or folder in the release, re-derives the dataset hash and the manifest's
digest (so its config, name, version, counts and usage are covered too), compares every Parquet file's schema with the declared Arrow schema
(names, types, nullability), checks every row with its table's record rules, and opens every
shard to see that its members belong to rows of its table (clips, or the sft/rl task rows) and
that each sample's JSON equals its row.

The card (`README.md`) and `report.html` are made from the manifest's first version and listed
when the build seals it (`release.manifest.seal_manifest`); a manifest without its digest is an
unfinished release. Only `.work/`, the build's staging area, is never part of a release.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa

from vidcorpus import storage
from vidcorpus.release.layout import CARD, MANIFEST, SAMPLE_TABLES, WORK_DIR, shard_table
from vidcorpus.release.manifest import DIGEST, dataset_hash, file_entry, is_sealed, manifest_digest
from vidcorpus.release.parquet import read_parquet
from vidcorpus.release.reader import read_manifest, release_files, shard_members, shard_paths, table_paths
from vidcorpus.release.webdataset import sample_key
from vidcorpus.schemas import TABLES, RecordError, check_record
from vidcorpus.schemas.tables import with_embedding_dim
from vidcorpus.tasks.checks import row_problems

PRIMARY_KEYS = {"videos": "video_id", "clips": "clip_id", "annotations": "ann_id", "sft": "sample_id",
                "rl": "sample_id"}
MAX_ROW_PROBLEMS = 20
"""Row problems reported per file; the rest are counted, so one bad table cannot flood the report."""


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
    if not is_sealed(manifest):
        return [(f"{MANIFEST}: has no {DIGEST}: the build stopped before the card and report were written "
                 "(an unfinished release); run the same build command again to finish it")]
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
        if path.startswith(f"{WORK_DIR}/") or path == MANIFEST:
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
    listed = {e["path"] for e in manifest["files"]} | {MANIFEST}
    problems = [f"{path}: not listed in {MANIFEST} (stray {'folder' if path.endswith('/') else 'file'})"
                for path in release_files(root) if path not in listed]
    if CARD not in listed:
        problems.append(f"{MANIFEST}: the dataset card {CARD} is not listed")
    return problems


def _hash_problems(manifest: dict[str, Any]) -> list[str]:
    problems = []
    expected = dataset_hash(manifest["files"])
    if manifest["dataset_hash"] != expected:
        problems.append(f"{MANIFEST}: dataset_hash is {manifest['dataset_hash']}, its files hash to {expected}")
    digest = manifest_digest(manifest)
    if manifest[DIGEST] != digest:
        problems.append(f"{MANIFEST}: {DIGEST} is {manifest[DIGEST]}, its content hashes to {digest} "
                        "(the manifest was edited after the build)")
    return problems


def _check_tables(root: str, manifest: dict[str, Any], present: set[str]
                  ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Schema and rows of every table; returns the rows of tables whose files were all readable."""
    schemas = TABLES
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
                data = read_parquet(storage.join(root, path))
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
        if table in SAMPLE_TABLES:
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
