"""Discover inputs (a directory, a glob, a list file or one video) and identify each by content.

Local inputs are listed with the operating system, not through Beam (which drops what it cannot
stat): every entry with a video extension is kept, whatever it is, and `Identify` turns what
cannot be read as a video file (a FIFO, a socket, a device, a dangling symlink, a symlink loop, a
missing list entry) into a failures row with a plain reason, before anything opens it. Names that
are not valid UTF-8 are carried as percent-encoded `file://` URIs (`storage.uri_of_path`).
"""

from __future__ import annotations

import errno
import glob
import os
import posixpath
import stat
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
    keeping only video extensions; a .txt/.list/.lst file lists one URI per line, all kept
    (blank lines and lines starting with `#`, indented or not, are ignored)."""
    if any(c in spec for c in GLOB_CHARS):
        return _by_extension(_match(spec), cfg)
    if spec.lower().endswith(LIST_EXTENSIONS) and storage.exists(spec):
        return list_file_entries(storage.read_bytes(spec)), []
    if _is_dir(spec):
        if storage.is_local(spec):
            return _by_extension(_walk(storage.local_path(spec)), cfg)
        return _by_extension(_match(storage.join(spec.rstrip("/"), "**")), cfg)
    if storage.exists(spec) or (storage.is_local(spec) and os.path.lexists(storage.local_path(spec))):
        return [spec], []
    raise FileNotFoundError(f"input not found: {spec}")


def list_file_entries(data: bytes) -> list[str]:
    """The URIs of a list file, sorted and unique; names that are not UTF-8 stay lossless."""
    lines = (os.fsdecode(raw.strip()) for raw in data.splitlines())
    return sorted({_as_uri(line) for line in lines if line and not line.startswith("#")})


def _as_uri(entry: str) -> str:
    return storage.uri_of_path(entry) if storage.is_local(entry) and not entry.startswith("file://") else entry


def _is_dir(spec: str) -> bool:
    if storage.is_local(spec):
        return posixpath.isdir(storage.local_path(spec))
    return spec.endswith("/")


def _walk(root: str) -> list[str]:
    """Every entry under a local folder, symlinked folders followed once (a folder reached
    again through a link loop is not walked twice)."""
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        found += [os.path.join(folder, f) for f in files]
    return sorted(storage.uri_of_path(p) for p in found)


def _match(pattern: str) -> list[str]:
    if storage.is_local(pattern):
        return sorted(storage.uri_of_path(p) for p in glob.glob(storage.local_path(pattern), recursive=True)
                      if not os.path.isdir(p))
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


class NotAFile(Exception):
    """An input that is not a regular file that can be read (or a link to one)."""


def check_regular_file(uri: str) -> None:
    """Raise `NotAFile` with a plain reason unless local `uri` is a regular file; nothing is opened,
    so a FIFO or a device can never block the build."""
    if not storage.is_local(uri):
        return
    path = storage.local_path(uri)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NotAFile(_stat_failure(path, exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(f"not a regular file (it is {_kind(st.st_mode)})")


def _stat_failure(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link never reaches a file"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return f"dangling symlink: its target {storage.uri_of_path(os.readlink(path))} does not exist"
    if exc.errno == errno.ENOENT:
        return "no such file (listed, but not there)"
    return f"cannot be read: {exc.strerror}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a file"


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
            check_regular_file(uri)
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
