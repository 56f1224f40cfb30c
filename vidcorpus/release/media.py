"""The pixels behind a task row's media, found inside the release.

A task row's media entry is a probe (its MP4 under `probes/`, written mode) or a window of a
source video. A window is never read from the source (which a release does not ship): it is
covered by the clip MP4s of that video inside the clip shards, which start at their clip's
`start_s`. So every media entry resolves to pieces, each a stretch of the media's own clock
played from one MP4 of the release at a fixed offset, and a frame at media time t is read
from the piece on screen at t.
"""

from __future__ import annotations

import json
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vidcorpus import storage
from vidcorpus.release.files import ReleaseFiles
from vidcorpus.release.frames import read_frames

_CLIP_COLUMNS = ["clip_id", "video_id", "start_s", "end_s", "shard"]


class MediaMissing(ValueError):
    """A media entry whose pixels the release does not hold."""


@dataclass(frozen=True)
class Piece:
    """[media_start_s, media_end_s) of a media, shown by `relpath` (or its shard `member`) at
    file time = media time + `file_offset_s`."""

    relpath: str
    member: str | None
    media_start_s: float
    media_end_s: float
    file_offset_s: float


class ReleaseMedia:
    """Resolves media entries to pieces of the release's MP4s and reads frames from them."""

    def __init__(self, files: ReleaseFiles, cached_shards: int = 2):
        self.files = files
        self._clips: dict[str, list[dict[str, Any]]] | None = None
        self._shards: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._cached_shards = cached_shards

    def clips_of(self, video_id: str) -> list[dict[str, Any]]:
        if self._clips is None:
            table = self.files.table("clips", _CLIP_COLUMNS)
            self._clips = {}
            for clip in (table.to_pylist() if table is not None else []):
                self._clips.setdefault(clip["video_id"], []).append(clip)
            for clips in self._clips.values():
                clips.sort(key=lambda c: c["start_s"])
        return self._clips.get(video_id, [])

    def pieces(self, media: dict[str, Any]) -> list[Piece]:
        if media["kind"] == "probe":
            if not media.get("uri"):
                raise MediaMissing(f"probe {media.get('probe_id')} was not written (tasks.media_mode is reference); "
                                   "only its edit list is in the release")
            return [Piece(media["uri"], None, 0.0, float(media["duration_s"]), 0.0)]
        start, end = float(media["start_s"]), float(media["end_s"])
        pieces = [Piece(f"shards/{clip['shard']}", f"{clip['clip_id']}.mp4", max(clip["start_s"], start) - start,
                        min(clip["end_s"], end) - start, start - clip["start_s"])
                  for clip in self.clips_of(media["video_id"])
                  if clip["shard"] and clip["start_s"] < end and clip["end_s"] > start]
        if not pieces:
            raise MediaMissing(f"no clip MP4 of video {media['video_id']} covers {start:.3f}-{end:.3f} s "
                               "(was the release built with clips.mode off?)")
        return pieces

    def video_bytes(self, piece: Piece) -> bytes:
        if piece.member is None:
            return self.files.read(piece.relpath)
        if storage.is_local(self.files.root):
            with tarfile.open(storage.local_path(self.files.url(piece.relpath))) as tar:
                return tar.extractfile(piece.member).read()
        return self._remote_shard(piece.relpath)[piece.member]

    def _remote_shard(self, relpath: str) -> dict[str, bytes]:
        """The MP4 members of a remote shard, read once in one stream and kept for the next few media."""
        if relpath not in self._shards:
            with self.files.open(relpath) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                self._shards[relpath] = {m.name: tar.extractfile(m).read() for m in tar
                                         if m.isfile() and m.name.endswith(".mp4")}
            while len(self._shards) > self._cached_shards:
                self._shards.popitem(last=False)
        self._shards.move_to_end(relpath)
        return self._shards[relpath]

    def frames(self, media: dict[str, Any], times: Sequence[float], size: tuple[int, int] | None = None,
               backend: str = "auto") -> tuple[np.ndarray, str]:
        """Frames of `media` at `times` (its own clock), in order; and the backend that read them."""
        pieces = self.pieces(media)
        owner = [piece_at(pieces, t) for t in times]
        parts: dict[int, np.ndarray] = {}
        used = backend
        for index in sorted(set(owner)):
            wanted = [t + pieces[index].file_offset_s for t, o in zip(times, owner) if o == index]
            parts[index], used = read_frames(self.video_bytes(pieces[index]), wanted, size, backend)
        return stack_in_order(parts, owner, size), used


def piece_at(pieces: Sequence[Piece], time: float) -> int:
    """Index of the piece on screen at `time`: the last one starting at or before it."""
    index = 0
    for i, piece in enumerate(pieces):
        if piece.media_start_s <= time + 1e-6:
            index = i
    return index


def stack_in_order(parts: dict[int, np.ndarray], owner: list[int], size: tuple[int, int] | None) -> np.ndarray:
    """Frames read per piece put back in the order of the asked times."""
    if not owner:
        height, width = size if size else (0, 0)
        return np.empty((0, height, width, 3), dtype=np.uint8)
    taken = {index: 0 for index in parts}
    out = []
    for index in owner:
        out.append(parts[index][taken[index]])
        taken[index] += 1
    return np.stack(out)


def media_recipes(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A task row's media entries with what assembling them takes (source span, clip and probe
    ids) from the row's answer key: for the reader of a release, never for a model."""
    recipes = {m["media_id"]: m for m in json.loads(row.get("answer_key") or "{}").get("media", [])}
    return [{**entry, **recipes.get(entry["media_id"], {})} for entry in row["media"]]
