"""WebDataset, read and written: tar shards of samples, each sample's members named `<key>.<ext>`.

Written with the standard library's tarfile in the WebDataset layout (the `webdataset`
package's own writer would import torch into every worker just to write tars). Member times,
owners and modes are fixed and members are written in key order, so a shard depends only on
its samples; `webdataset.WebDataset` and `datasets.load_dataset("webdataset")` read them.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

from vidcorpus import storage


@dataclass(frozen=True)
class FileMember:
    """A member whose bytes are the file at `uri`, streamed into the tar (never read whole)."""
    uri: str


Member = Union[bytes, FileMember]


def write_shard(samples: Iterable[dict[str, Member]], uri: str) -> int:
    """Write samples (each a dict with `__key__` and extension -> bytes or a `FileMember`) to one
    tar; returns the count."""
    count = 0
    with storage.open_write(uri) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = sample["__key__"]
            if "." in key:
                raise ValueError(f"sample key {key!r} must not contain '.' (WebDataset splits names there)")
            for ext in sorted(k for k in sample if not k.startswith("__")):
                _add(tar, f"{key}.{ext}", sample[ext])
            count += 1
    return count


def _add(tar: tarfile.TarFile, name: str, data: Member) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = 0, 0o444
    info.uname = info.gname = "vidcorpus"
    if isinstance(data, FileMember):
        info.size = storage.size_of(data.uri)
        with storage.open_read(data.uri) as f:
            tar.addfile(info, f)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def read_shard(uri: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of one tar shard, streamed in file order (works for remote files too)."""
    with storage.open_read(uri) as f:
        with tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if member.isfile():
                    data = tar.extractfile(member)
                    yield member.name, data.read() if data else b""


def sample_key(member: str) -> str:
    """WebDataset sample key of a member: the name up to its first dot (clip ids hold no dots)."""
    return member.split("/")[-1].split(".", 1)[0]
