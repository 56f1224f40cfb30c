"""Reading and writing through Beam FileSystems, so local paths and `gs://` URIs share one code path.

Writes go to a temporary name and are renamed when complete: a partial file is never visible
under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import shutil
import tempfile
import threading
from typing import IO, Iterator
from urllib.parse import quote_from_bytes, unquote_to_bytes

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts) if parts else base


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    """The operating-system path of a local URI; `file://` URIs are percent-decoded to the exact
    bytes of the name (`os.fsdecode`), so any name the file system allows round-trips."""
    if uri.startswith("file://"):
        return os.fsdecode(unquote_to_bytes(uri[len("file://"):]))
    return uri


def uri_of_path(path: str) -> str:
    """A local path as text that can be stored anywhere: the path itself when its name is valid
    UTF-8, else a percent-encoded `file://` URI (lossless, and readable where the name is)."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "file://" + quote_from_bytes(raw, safe="/!$&'()*+,;=:@-._~")
    return path


def _fs_uri(uri: str) -> str:
    """What Beam FileSystems understands: local URIs as plain paths."""
    return local_path(uri) if is_local(uri) else uri


def open_read(uri: str) -> IO[bytes]:
    if is_local(uri):
        return open(local_path(uri), "rb")
    return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as f:
        return f.read()


def exists(uri: str) -> bool:
    return FileSystems.exists(_fs_uri(uri))


def size_of(uri: str) -> int:
    if is_local(uri):
        return os.stat(local_path(uri)).st_size
    found = FileSystems.match([uri])[0].metadata_list
    if not found:
        raise FileNotFoundError(f"no such file: {uri}")
    return found[0].size_in_bytes


def files_named_like(uri: str) -> list[str]:
    """The other files in `uri`'s folder whose name starts with its stem and a dot (for
    `movie.mp4`: `movie.srt`, `movie.en.vtt`), sorted."""
    folder, name = posixpath.split(uri)
    stem = posixpath.splitext(name)[0] + "."
    if is_local(uri):
        directory = local_path(folder) or "."
        found = [posixpath.join(folder, n) for n in os.listdir(directory) if n.startswith(stem) and n != name
                 and os.path.isfile(os.path.join(directory, n))] if os.path.isdir(directory) else []
    else:
        pattern = posixpath.join(folder, re.sub(r"([*?\[\]])", r"[\1]", stem) + "*")
        found = [m.path for m in FileSystems.match([pattern])[0].metadata_list if m.path != uri]
    return sorted(found)


def makedirs(uri: str) -> None:
    if is_local(uri):
        os.makedirs(local_path(uri), exist_ok=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write `data` to `uri` atomically (temporary name, then rename)."""
    with open_write(uri) as f:
        f.write(data)


class open_write:
    """Context manager yielding a writable stream that lands at `uri` only on success."""

    def __init__(self, uri: str):
        self.uri = uri
        self.tmp = f"{uri}.tmp-{os.getpid()}-{threading.get_ident()}"  # unique per writer

    def __enter__(self) -> IO[bytes]:
        makedirs(posixpath.dirname(self.uri))
        self.stream = FileSystems.create(self.tmp, compression_type=CompressionTypes.UNCOMPRESSED)
        return self.stream

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stream.close()
        if exc_type is not None:
            FileSystems.delete([self.tmp])
            return
        if exists(self.uri):
            FileSystems.delete([self.uri])
        FileSystems.rename([self.tmp], [self.uri])


def delete(uri: str) -> None:
    if exists(uri):
        FileSystems.delete([uri])


TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM, errno.EAGAIN,
                              errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
                              errno.ECONNABORTED, errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTUNREACH,
                              errno.ESTALE, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM})
"""Errors of the machine or the network, not of the file's content: they may not recur."""


class DiskFull(OSError):
    """No space left where the build writes: the build stops, and the same command resumes it."""


def is_disk_full(exc: BaseException) -> bool:
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in causes(exc))


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` may not happen again on a retry (disk full, I/O or permission error, network,
    timeout, a storage service's 5xx/429), so a failure it caused must never be staged as final."""
    for e in causes(exc):
        if isinstance(e, (TimeoutError, ConnectionError)):
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
        code = getattr(e, "code", None) or getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(code, int) and (code == 429 or 500 <= code < 600):
            return True
    return False


def causes(exc: BaseException | None):
    """`exc` and the exceptions it was raised from or during, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_bytes(uri: str) -> int | None:
    """Free space on the file system holding local `uri` (its nearest existing folder)."""
    if not is_local(uri):
        return None
    path = local_path(uri)
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path or ".").free
    except OSError:
        return None


def copy(src: str, dst: str, chunk: int = 1 << 20) -> None:
    """Copy `src` to `dst` in chunks (never the whole file in memory), atomically."""
    with open_read(src) as f, open_write(dst) as out:
        while block := f.read(chunk):
            out.write(block)


def rename(src: str, dst: str) -> None:
    delete(dst)
    FileSystems.rename([src], [dst])


class local_file:
    """A local path to write a file that lands at `uri` (local or remote) on `commit()`, for
    writers that need a seekable local file (an MP4 muxer). Local URIs are written in place
    under a temporary name; remote ones are uploaded in chunks from a temporary local file."""

    def __init__(self, uri: str):
        self.uri = uri
        if is_local(uri):
            makedirs(posixpath.dirname(local_path(uri)))
            self.path = f"{local_path(uri)}.tmp-{os.getpid()}-{threading.get_ident()}"
        else:
            handle, self.path = tempfile.mkstemp(prefix="vidcorpus-", suffix=posixpath.splitext(uri)[1])
            os.close(handle)

    def commit(self) -> int:
        """Move the written file to `uri`; returns its size."""
        written = os.path.getsize(self.path)
        if is_local(self.uri):
            os.replace(self.path, local_path(self.uri))
        else:
            copy(self.path, self.uri)
            os.unlink(self.path)
        return written

    def discard(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> "local_file":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def local_files(uris: list[str]) -> Iterator[list[str]]:
    """Local paths for files that land at `uris` (see `local_file`) when the block succeeds."""
    targets = [local_file(uri) for uri in uris]
    try:
        yield [target.path for target in targets]
    except BaseException:
        for target in targets:
            target.discard()
        raise
    for target in targets:
        target.commit()
