"""The files of a published release, wherever it lives: a local folder, `gs://`, `http(s)://` or `hf://`.

A release is addressed by its root (the folder holding `manifest.json`). Local and `gs://` roots
go through `vidcorpus.storage` (Beam FileSystems); `http(s)://` roots (a web server, a CDN, the
Hub's `resolve/<revision>` URLs) are read with the standard library; `hf://datasets/<org>/<name>`
roots through `huggingface_hub`'s file system. The manifest lists every shard and table part, so
nothing needs a directory listing.
"""

from __future__ import annotations

import io
import json
import urllib.request
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from vidcorpus import storage
from vidcorpus.release.layout import shard_table

MANIFEST = "manifest.json"
_HTTP_TIMEOUT_S = 60


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


class ReleaseFiles:
    """Read access to one release's files by their path relative to its root."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self._manifest: dict[str, Any] | None = None

    def url(self, relpath: str) -> str:
        return f"{self.root}/{relpath}" if is_http(self.root) or self.root.startswith("hf://") \
            else storage.join(self.root, relpath)

    def open(self, relpath: str) -> IO[bytes]:
        """A binary stream of one file of the release (streamed, never read whole first)."""
        return self.open_url(self.url(relpath))

    @staticmethod
    def open_url(url: str) -> IO[bytes]:
        """A binary stream of any local, `gs://`, `http(s)://` or `hf://` file."""
        if is_http(url):
            return urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S)
        if url.startswith("hf://"):
            from huggingface_hub import HfFileSystem

            return HfFileSystem().open(url[len("hf://"):], "rb")
        return storage.open_read(url)

    def read(self, relpath: str) -> bytes:
        with self.open(relpath) as f:
            return f.read()

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = json.loads(self.read(MANIFEST))
        return self._manifest

    def listed(self, prefix: str) -> list[str]:
        """Paths the manifest lists under `prefix`, sorted."""
        return sorted(entry["path"] for entry in self.manifest["files"] if entry["path"].startswith(prefix))

    def shards(self, table: str, split: str) -> list[str]:
        """Shard paths of `table` ('clips', 'sft' or 'rl') in `split`, in order (clip shards of
        every training bucket, `<split>-<bucket>-NNNNNN.tar`, included)."""
        stem = split if table == "clips" else f"{table}-{split}"
        return [path for path in self.listed("shards/")
                if path.endswith(".tar") and (path[len("shards/"):].rsplit("-", 1)[0] == stem
                                              or (table == "clips" and shard_table(path) == "clips"
                                                  and path[len("shards/"):].startswith(stem + "-")
                                                  and path.count("-") == 2))]

    def table(self, table: str, columns: list[str] | None = None) -> pa.Table | None:
        """A table's Parquet parts as one Arrow table; None when the release has no such table."""
        parts = self.listed(f"data/{table}/")
        if not parts:
            return None
        return pa.concat_tables(pq.read_table(io.BytesIO(self.read(path)), columns=columns) for path in parts)
