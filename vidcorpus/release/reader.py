"""Reading a release: its manifest, tables and shards. Shared by the validator, the dataset card,
the report and the Hub upload, so every tool sees a release the same way."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, Iterator

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from vidcorpus import storage
from vidcorpus.release.layout import MANIFEST, WORK_DIR, table_of
from vidcorpus.release.parquet import read_parquet, read_parquet_schema
from vidcorpus.release.webdataset import read_shard


def read_manifest(root: str) -> dict[str, Any]:
    return json.loads(storage.read_bytes(storage.join(root, MANIFEST)))


def release_version(manifest: dict[str, Any]) -> str:
    """The manifest's `version`, or `v` + the first 12 hex digits of the dataset hash."""
    return str(manifest.get("version") or f"v{manifest['dataset_hash'][:12]}")


def release_title(manifest: dict[str, Any]) -> str:
    """`<name> <version>` for a named release, else `vidcorpus release <version>`."""
    return f"{manifest.get('name') or 'vidcorpus release'} {release_version(manifest)}"


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


def read_table(root: str, manifest: dict[str, Any], table: str,
               columns: list[str] | None = None) -> pa.Table | None:
    """All files of one table concatenated (only `columns` that exist, when given), or None when
    the release has no such table."""
    paths = table_paths(manifest).get(table)
    if not paths:
        return None
    if columns is not None:
        present = read_parquet_schema(storage.join(root, paths[0])).names
        columns = [c for c in columns if c in present]
    return pa.concat_tables([read_parquet(storage.join(root, p), columns) for p in paths])


def skipped_stages(manifest: dict[str, Any]) -> dict[str, str]:
    """Stage -> reason, from the manifest's `skipped_stages` (a mapping, or a bare list of names)."""
    skipped = manifest.get("skipped_stages") or {}
    return {name: "" for name in skipped} if isinstance(skipped, list) else dict(skipped)


def shard_members(root: str, relpath: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of one of the release's tar shards, streamed in file order."""
    return read_shard(storage.join(root, relpath))


def release_files(root: str) -> list[str]:
    """Paths relative to `root` of every file in a release (any folder, hidden ones too), the
    work directory `.work/` excepted."""
    if not storage.is_local(root):
        return [p for p in list_files(root, "") if not p.startswith(f"{WORK_DIR}/")]
    base = storage.local_path(root)
    found = []
    for folder, dirs, files in os.walk(base):
        rel = os.path.relpath(folder, base)
        dirs[:] = sorted(d for d in dirs if not (rel == "." and d == WORK_DIR))
        found += [os.path.normpath(os.path.join(rel, f)) for f in files]
        if rel != "." and not files and not dirs:
            found.append(rel + "/")  # an empty folder
        found += [os.path.normpath(os.path.join(rel, d)) + "/" for d in dirs if os.path.islink(os.path.join(folder, d))]
    return sorted(storage.uri_of_path(p) for p in found)


def list_files(root: str, folder: str) -> list[str]:
    """Paths relative to `root` of every file under `folder`, through Beam FileSystems."""
    base = storage.join(root, folder)
    matched = FileSystems.match([storage.join(base, "**")])[0].metadata_list
    prefix = root.rstrip("/") + "/"
    return sorted(m.path[len(prefix):] if m.path.startswith(prefix) else m.path for m in matched)


