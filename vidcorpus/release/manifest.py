"""Manifest: what a release holds and how it was made, with a checksum per file and one
dataset hash over them all. Nothing time- or host-dependent goes in, so identical builds
give identical manifests."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any, Iterable

from vidcorpus import __version__, storage
from vidcorpus.release.layout import MANIFEST

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
    h = hashlib.sha256()
    for entry in sorted(files, key=lambda e: e["path"]):
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
    storage.write_bytes(storage.join(root, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest
