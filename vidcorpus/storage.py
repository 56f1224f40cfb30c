"""Reading and writing through Beam FileSystems, so local paths and `gs://` URIs share one code path.

Writes go to a temporary name and are renamed when complete: a partial file is never visible
under its final name.
"""

from __future__ import annotations

import os
import posixpath
import threading
from typing import IO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts) if parts else base


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def open_read(uri: str) -> IO[bytes]:
    return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as f:
        return f.read()


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def size_of(uri: str) -> int:
    return FileSystems.match([uri])[0].metadata_list[0].size_in_bytes


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
