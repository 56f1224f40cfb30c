"""Discover inputs (a directory, a glob, a list file or one video) and identify each by content."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from vidcorpus import ids, storage
from vidcorpus.config.build import BuildConfig, InputConfig
from vidcorpus.pipelines.staging import video_result
from vidcorpus.schemas.records import failure_row

LIST_EXTENSIONS = (".txt", ".list", ".lst")
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Input:
    """One identified input: where it is, its size, and its content id."""
    uri: str
    size: int
    video_id: str


def discover(spec: str, cfg: InputConfig) -> tuple[list[str], list[str]]:
    """(video URIs, skipped URIs). Directories are walked recursively and globs matched, both
    keeping only video extensions; a .txt/.list/.lst file lists one URI per line, all kept."""
    if any(c in spec for c in GLOB_CHARS):
        return _by_extension(_match(spec), cfg)
    if spec.lower().endswith(LIST_EXTENSIONS) and storage.exists(spec):
        lines = storage.read_bytes(spec).decode().splitlines()
        return sorted({line.strip() for line in lines if line.strip() and not line.startswith("#")}), []
    if _is_dir(spec):
        return _by_extension(_match(storage.join(spec.rstrip("/"), "**")), cfg)
    if storage.exists(spec):
        return [spec], []
    raise FileNotFoundError(f"input not found: {spec}")


def _is_dir(spec: str) -> bool:
    if storage.is_local(spec):
        return posixpath.isdir(storage.local_path(spec))
    return spec.endswith("/")


def _match(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _by_extension(uris: Iterable[str], cfg: InputConfig) -> tuple[list[str], list[str]]:
    exts = {"." + e.lower() for e in cfg.extensions}
    keep, skip = [], []
    for uri in uris:
        (keep if posixpath.splitext(uri)[1].lower() in exts else skip).append(uri)
    return keep, skip


class Identify(beam.DoFn):
    """uri -> (video_id, Input); unreadable inputs go to the `failed` output as result dicts."""

    def __init__(self, cfg: BuildConfig):
        self.mode = cfg.ids.hash

    def process(self, uri: str):
        try:
            size = storage.size_of(uri)
            yield keyed_input(ids.video_id(uri, size, self.mode), uri, size)
        except Exception as exc:  # noqa: BLE001 - an unreadable input is one failures row
            yield beam.pvalue.TaggedOutput("failed", video_result(failures=[failure_row(uri, "discover", exc)]))


def keyed_input(video_id: str, uri: str, size: int) -> tuple[str, Input]:
    return video_id, Input(uri, size, video_id)


class DuplicateContent(Exception):
    """Same bytes as another input: the corpus keeps one copy."""


def pick_one(element: tuple[str, Iterable[Input]]):
    """Keep the lexicographically first URI of identical files; the others become failures."""
    _, inputs = element
    first, *rest = sorted(inputs, key=lambda i: i.uri)
    yield first
    for dup in rest:
        exc = DuplicateContent(f"same content as {first.uri} (video_id {first.video_id})")
        yield beam.pvalue.TaggedOutput("failed", video_result(failures=[failure_row(dup.uri, "discover", exc, dup.video_id)]))
