"""Where things are in a release and beside it: its folders and top-level files, the work
directory, and the paths of named versions. Every tool that writes or reads a release uses these."""

from __future__ import annotations

import re

from vidcorpus import storage

MANIFEST = "manifest.json"
CARD = "README.md"
REPORT = "report.html"
DERIVED_FILES = (CARD, REPORT)
"""Top-level files made from the manifest after the data; listed in it when it is sealed."""
DERIVED_DIRS = ("ab",)
"""Folders of views made from a finished release (`vidcorpus llm ab`); the seal lists their files."""
RELEASE_DIRS = ("data", "shards", "failures", "probes")
"""The folders a build owns: every file under them must be listed in the manifest."""
SAMPLE_TABLES = ("sft", "rl")
"""Task tables, also written as JSON-only WebDataset shards."""
WORK_DIR = ".work"
"""Per-video staged results and the LLM cache; never part of a release."""
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


class ReleaseExists(RuntimeError):
    """A finished version is never modified."""


def release_paths(output: str, name: str | None, version: str | None) -> tuple[str, str]:
    """(release directory, work directory). A named version lives at `<output>/<name>/<version>`
    and shares `<output>/<name>/.work` (per-video results, LLM cache) with the name's other
    versions, so a new version over more inputs only processes the new videos."""
    if (name is None) != (version is None):
        raise ValueError("--name and --version go together")
    if name is None:
        return output, storage.join(output, WORK_DIR)
    if not SEMVER.match(version):
        raise ValueError(f"--version must be semantic (MAJOR.MINOR.PATCH), got {version!r}")
    return storage.join(output, name, version), storage.join(output, name, WORK_DIR)


def clear_release(root: str) -> None:
    """Remove an unfinished or earlier build's outputs (never the work directory) before
    writing anew; the manifest goes first, so a half-cleared release never looks finished."""
    for name in (MANIFEST, *DERIVED_FILES):
        storage.delete(storage.join(root, name))
    for folder in (*RELEASE_DIRS, *DERIVED_DIRS):
        storage.delete(storage.join(root, folder))


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


def shard_table(relpath: str) -> str:
    """The table whose rows a shard carries: `<table>-<split>-N.tar` for task samples (JSON only),
    `<split>-N.tar` for clips (JSON, keyframe JPEGs, MP4)."""
    prefix = relpath.split("/")[-1].split("-", 1)[0]
    return prefix if prefix in SAMPLE_TABLES else "clips"


def is_derived(relpath: str) -> bool:
    """A view made from the release (card, report, A/B captions), not data the dataset hash covers."""
    return relpath in DERIVED_FILES or relpath.split("/", 1)[0] in DERIVED_DIRS
