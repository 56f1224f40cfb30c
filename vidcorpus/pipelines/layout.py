"""The release layout, computed from the small index alone: which clips go to which shard and
which rows to which Parquet part. Units are taken in id order (uri order for failures) and
shards close at `shards.max_samples` or `max_bytes` as a single sorted pass would close them,
so the layout depends only on the inputs and config, never on the runner or its workers.

The layout is emitted as keyed slices, `(file key, slice)`: a file key names one shard or table
part, a slice is a run of one unit's rows. A GroupByKey brings each file's slices to one writer,
which reads only those units' staged rows.
"""

from __future__ import annotations

from collections import Counter
from itertools import groupby
from typing import Any, Iterable, Iterator, Sequence

from vidcorpus.pipelines.index import UNIT_ORDERED_BY_URI
from vidcorpus.release.layout import SAMPLE_TABLES
from vidcorpus.release.parquet import ROWS_PER_FILE, part_name
from vidcorpus.release.webdataset import shard_name
from vidcorpus.schemas.tables import EMBEDDING_TABLES

PART_BYTES = 32 << 20
"""Rows per Parquet part at most, by their size in Arrow memory (besides ROWS_PER_FILE), so a
part's writer holds tens of MiB whatever the corpus and however wide its rows (CLIP frames)."""

FileKey = tuple  # (kind "shard" | "part", table, relpath, embedding width or None)
Slice = tuple    # (position, unit, start, stop, staged, shard runs)
"""Rows [start, stop) of a unit's table; `position` orders slices inside a file; `staged` says
the rows were staged at segmenting (frames); clip rows of a part carry their shards as
(shard name, count) runs."""


class ReleaseLayout:
    """Shard and part assignments of every row, from the index entries (`stage_release_rows`)."""

    def __init__(self, entries: Iterable[dict[str, Any]], max_samples: int, max_bytes: int,
                 tables: Sequence[str]):
        self.entries = sorted(entries, key=lambda e: (e["order"], e["unit"]))
        self.max_samples, self.max_bytes, self.tables = max_samples, max_bytes, tuple(tables)
        self.shards: set[str] = set()
        self.clip_state: dict[str, list[int]] = {}
        self.bucket_clips: Counter = Counter()

    def slices(self) -> Iterator[tuple[FileKey, Slice]]:
        for table in self.tables:
            parts = _Parts(table, self._embedding_dim(table))
            shards = _SampleShards(table, self.max_samples) if table in SAMPLE_TABLES else None
            for entry in self._units(table):
                count = entry["rows"].get(table, 0)
                if not count:
                    continue
                staged = table in entry.get("staged", ())
                runs: tuple = ()
                if table == "clips":
                    names = self._clip_shards(entry)
                    yield from _shard_slices("clips", entry, names)
                    runs = tuple(names)
                elif shards is not None:
                    yield from _shard_slices(table, entry, shards.take(entry, count))
                yield from parts.take(entry, count, staged, runs)
            yield from parts.finish()
            if shards is not None:
                self.shards |= shards.names

    def _units(self, table: str) -> list[dict[str, Any]]:
        if table in UNIT_ORDERED_BY_URI:
            return sorted((e for e in self.entries if e["rows"].get(table)), key=lambda e: (e["uri"], e["unit"]))
        return self.entries

    def _embedding_dim(self, table: str) -> int | None:
        """A fixed width when every embedding of the table has the same (as the schema is written)."""
        if table not in EMBEDDING_TABLES:
            return None
        dims = {d for e in self.entries for d in e.get("dims", {}).get(table, ())}
        return dims.pop() if len(dims) == 1 else None

    def _clip_shards(self, entry: dict[str, Any]) -> list[str]:
        """Each clip's shard, per (split, bucket) in clip id order, closing a shard at
        max_samples clips or when the next clip would pass max_bytes."""
        names = []
        buckets = entry.get("buckets") or [None] * len(entry["clip_bytes"])
        for size, bucket in zip(entry["clip_bytes"], buckets):
            stem = entry["split"] if bucket is None else f"{entry['split']}-{bucket}"
            state = self.clip_state.setdefault(stem, [0, 0, 0])   # index, clips, bytes
            if state[1] and (state[1] >= self.max_samples or state[2] + size > self.max_bytes):
                state[:] = [state[0] + 1, 0, 0]
            state[1] += 1
            state[2] += size
            names.append(shard_name(stem, state[0]))
            self.shards.add(names[-1])
            if bucket is not None:
                self.bucket_clips[bucket] += 1
        return names

    def summary(self) -> dict[str, Any]:
        """Counts for the manifest (call after `slices` is exhausted)."""
        counts: dict[str, Any] = {t: sum(e["rows"].get(t, 0) for e in self.entries) for t in self.tables}
        stages: Counter = Counter()
        for e in self.entries:
            stages.update(e.get("failures_by_stage", {}))
        counts.update({
            "inputs_failed": sum(1 for e in self.entries if e.get("input_failed")),
            "failures_by_stage": dict(sorted(stages.items())),
            "shards": len(self.shards),
            "video_hours": round(sum(e["duration_s"] for e in self.entries if "duration_s" in e) / 3600, 6),
        })
        summary = {"counts": counts}
        if self.bucket_clips:
            summary["buckets"] = dict(sorted(self.bucket_clips.items()))
        return summary


class _Parts:
    """Cuts a table's rows, unit after unit in order, into parts that close at ROWS_PER_FILE rows
    or PART_BYTES of Arrow memory (a unit's rows counted at their average size)."""

    def __init__(self, table: str, dim: int | None):
        self.table, self.dim = table, dim
        self.part, self.rows, self.bytes = 0, 0, 0.0
        self.folder = "failures" if table == "failures" else f"data/{table}"

    def key(self, part: int) -> FileKey:
        return ("part", self.table, f"{self.folder}/{part_name(part)}", self.dim)

    def take(self, entry: dict[str, Any], count: int, staged: bool, shards: tuple) -> Iterator[tuple]:
        row_bytes = entry.get("bytes", {}).get(self.table, 0) / count
        start = 0
        while start < count:
            n = min(count - start, ROWS_PER_FILE - self.rows,
                    int((PART_BYTES - self.bytes) // row_bytes) if row_bytes else count)
            if n <= 0 and self.rows:
                self.part, self.rows, self.bytes = self.part + 1, 0, 0.0
                continue
            stop = start + max(n, 1)  # a row larger than a whole part gets a part of its own
            yield self.key(self.part), ((_order(entry, self.table), start), entry["unit"], start, stop, staged,
                                        _runs(shards[start:stop]))
            self.rows += stop - start
            self.bytes += (stop - start) * row_bytes
            start = stop

    def finish(self) -> Iterator[tuple]:
        """An empty table still gets its one (empty) part, so it loads."""
        if self.part == 0 and self.rows == 0:
            yield self.key(0), (("", 0), None, 0, 0, False, ())


class _SampleShards:
    """`<table>-<split>-NNNNNN.tar` shards of task samples, max_samples each, in sample id order."""

    def __init__(self, table: str, max_samples: int):
        self.table, self.max_samples = table, max_samples
        self.state: dict[str, list[int]] = {}
        self.names: set[str] = set()

    def take(self, entry: dict[str, Any], count: int) -> list[str]:
        stem = f"{self.table}-{entry['split']}"
        state = self.state.setdefault(stem, [0, 0])
        names = []
        for _ in range(count):
            if state[1] >= self.max_samples:
                state[:] = [state[0] + 1, 0]
            state[1] += 1
            names.append(shard_name(stem, state[0]))
        self.names.update(names)
        return names


def _order(entry: dict[str, Any], table: str) -> str:
    return entry["uri"] if table in UNIT_ORDERED_BY_URI else entry["order"]


def _runs(names: Sequence[str]) -> tuple[tuple[str, int], ...]:
    return tuple((name, sum(1 for _ in group)) for name, group in groupby(names))


def _shard_slices(table: str, entry: dict[str, Any], names: Sequence[str]) -> Iterator[tuple]:
    """One slice per run of the unit's rows that land in the same shard."""
    start = 0
    for name, count in _runs(names):
        yield ("shard", table, f"shards/{name}", None), ((entry["order"], start), entry["unit"], start,
                                                         start + count, False, ())
        start += count


def lay_out(_, entries: list[dict[str, Any]], max_samples: int, max_bytes: int, tables: Sequence[str]):
    """Beam step: every (file key, slice) of the release, then its counts (`summary` output)."""
    import apache_beam as beam

    layout = ReleaseLayout(entries, max_samples, max_bytes, tables)
    yield from layout.slices()
    yield beam.pvalue.TaggedOutput("summary", layout.summary())


# --------------------------------------------------------------------------- training buckets

RESOLUTIONS = (144, 240, 360, 480, 720, 1080, 1440, 2160)
ASPECTS = {"9x16": 9 / 16, "3x4": 3 / 4, "1x1": 1.0, "4x3": 4 / 3, "16x9": 16 / 9, "21x9": 21 / 9}
DURATIONS_S = (2, 5, 10, 30)


def clip_bucket(video: dict[str, Any], clip: dict[str, Any], bucket_by: Sequence[str]) -> str:
    """The clip's training bucket, e.g. `480p_16x9_10s`: the largest standard short side the
    video reaches, its nearest common aspect ratio (as displayed) and the clip's duration class
    (the upper bound, `long` past 30 s). Only `[a-z0-9_]`, so it sits inside a shard name."""
    width, height = video["display_width"], video["display_height"]
    parts = []
    for kind in bucket_by:
        if kind == "resolution":
            parts.append(f"{max([r for r in RESOLUTIONS if r <= min(width, height)] or [RESOLUTIONS[0]])}p")
        elif kind == "aspect":
            parts.append(min(ASPECTS, key=lambda name: abs(ASPECTS[name] - width / height)))
        else:
            parts.append(next((f"{d}s" for d in DURATIONS_S if clip["duration_s"] <= d), "long"))
    return "_".join(parts)
