"""Content-addressed response cache, so a re-run or resumed build pays for no LLM call twice.

Entries live at `<root>/<key[:2]>/<key>.json` and go through Beam FileSystems, so a local
directory and a `gs://` bucket work the same (a local root takes a shortcut through `os`: the
cache is read before every request, hundreds a second). The key is a hash of (model, prompt id and
version, exact request body); it never includes the endpoint's credentials. An entry holds
only what the client needs to rebuild a result (the validated content and its usage), not the
request, which can carry megabytes of images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from vidcorpus import storage

log = logging.getLogger(__name__)


def request_key(model: str, prompt_id: str, prompt_version: int, body: dict[str, Any]) -> str:
    """sha256 over a canonical JSON form of what determines the response."""
    canonical = json.dumps(
        {"model": model, "prompt_id": prompt_id, "prompt_version": prompt_version, "request": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"ResponseCache({self.root!r})"

    def path(self, key: str) -> str:
        return FileSystems.join(self.root, key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None when absent or unreadable (then the call is simply made again)."""
        path = self.path(key)
        try:
            entry = json.loads(_read(path).decode("utf-8"))
        except FileNotFoundError:
            return None
        except Exception as exc:  # a torn or foreign file is a miss, not a crash
            log.warning("unreadable cache entry %s: %s", path, type(exc).__name__)
            return None
        return entry if isinstance(entry, dict) and entry.get("key") == key else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Write under a temporary name, then rename: readers never see half an entry."""
        path = self.path(key)
        data = json.dumps({**entry, "key": key}, sort_keys=True, ensure_ascii=False).encode("utf-8")
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        if storage.is_local(path):
            os.makedirs(os.path.dirname(storage.local_path(path)), exist_ok=True)
            with open(storage.local_path(tmp), "wb") as f:
                f.write(data)
            os.replace(storage.local_path(tmp), storage.local_path(path))
            return
        with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data)
        FileSystems.rename([tmp], [path])


def _read(path: str) -> bytes:
    if storage.is_local(path):
        with open(storage.local_path(path), "rb") as f:
            return f.read()
    if not FileSystems.match([path])[0].metadata_list:
        raise FileNotFoundError(path)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()
