"""Manifest: what a release holds and how it was made, with a checksum per file, one dataset
hash over the data files, and a digest over the manifest's own content. Nothing time- or
host-dependent goes in, so identical builds give identical manifests.

It is written twice. The build's last pipeline step writes it with the data files; the card and
the report are then made from it, and `seal_manifest` adds their checksums and the
`manifest_digest` (over config, name, version, counts, usage, files: everything). Only a sealed
manifest marks a finished release, so a build killed before the seal is completed by a rerun.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any, Iterable

from vidcorpus import __version__, storage
from vidcorpus.release.layout import DERIVED_DIRS, DERIVED_FILES, MANIFEST, is_derived
from vidcorpus.release.reader import list_files

DIGEST = "manifest_digest"

RECORDED_PACKAGES = ("apache-beam", "av", "scenedetect", "opencv-python-headless", "numpy", "pyarrow",
                     "webdataset", "pydantic", "open_clip_torch", "torch", "openai")


def file_entry(root: str, relpath: str) -> dict[str, Any]:
    h, size = hashlib.sha256(), 0
    with storage.open_read(storage.join(root, relpath)) as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
            size += len(chunk)
    return {"path": relpath, "bytes": size, "sha256": h.hexdigest()}


def dataset_hash(files: Iterable[dict[str, Any]]) -> str:
    """sha256 over the path and sha256 of every data file (the card and report, views made from
    the manifest that quote this hash, are covered by `manifest_digest` instead)."""
    h = hashlib.sha256()
    for entry in sorted((e for e in files if not is_derived(e["path"])), key=lambda e: e["path"]):
        h.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"vidcorpus": __version__}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_manifest(root: str, config: dict[str, Any], counts: dict[str, Any], files: list[dict[str, Any]],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = sorted(files, key=lambda e: e["path"])
    manifest = {
        "format": "vidcorpus-release/1",
        "vidcorpus_version": __version__,
        "packages": package_versions(),
        "config": config,
        "counts": counts,
        **(extra or {}),
        "files": files,
        "dataset_hash": dataset_hash(files),
    }
    _store(root, manifest)
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without the digest itself."""
    content = {k: v for k, v in manifest.items() if k != DIGEST}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_sealed(manifest: dict[str, Any]) -> bool:
    return DIGEST in manifest


def seal_manifest(root: str) -> dict[str, Any]:
    """List the derived views present (card, report, A/B files) with their checksums and add the
    digest of the whole manifest: the release's last write, after which it is finished; rewriting
    a view (`vidcorpus report`, `llm ab`) seals again."""
    uri = storage.join(root, MANIFEST)
    manifest = json.loads(storage.read_bytes(uri))
    files = [e for e in manifest["files"] if not is_derived(e["path"])]
    views = [name for name in DERIVED_FILES if storage.exists(storage.join(root, name))]
    views += [path for folder in DERIVED_DIRS for path in list_files(root, folder)]
    files += [file_entry(root, path) for path in views]
    manifest = {k: v for k, v in manifest.items() if k != DIGEST}
    manifest["files"] = sorted(files, key=lambda e: e["path"])
    manifest[DIGEST] = manifest_digest(manifest)
    _store(root, manifest)
    return manifest


def _store(root: str, manifest: dict[str, Any]) -> None:
    storage.write_bytes(storage.join(root, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
