"""Record validation: every row is checked against its Arrow schema and the table's rules
before anything is written, so a bad record becomes a failures row instead of a bad file."""

from __future__ import annotations

import math
from typing import Any, Callable

import pyarrow as pa

from vidcorpus.schemas.tables import TABLES


class RecordError(ValueError):
    """A record that does not fit its table."""


def check_record(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as its table stores it (types conformed, e.g. float32 rounding), or RecordError
    naming the first problem. Writers use the returned row, so Parquet and JSON agree exactly."""
    schema = TABLES[table]
    _check_fields(schema, record)
    try:
        row = pa.Table.from_pylist([record], schema=schema).to_pylist()[0]
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise RecordError(f"{table}: {exc}") from None
    for rule in RULES.get(table, ()):
        rule(row)
    return row


def _check_fields(schema: pa.Schema, record: dict[str, Any]) -> None:
    extra = sorted(set(record) - set(schema.names))
    if extra:
        raise RecordError(f"unknown fields {extra}")
    for field in schema:
        value = record.get(field.name)
        if value is None and not field.nullable:
            raise RecordError(f"{field.name} is required")
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"{field.name} is not finite: {value}")


def _video_rules(v: dict[str, Any]) -> None:
    _require(v["duration_s"] > 0, f"duration_s must be positive, got {v['duration_s']}")
    _require(v["fps"] > 0, f"fps must be positive, got {v['fps']}")
    _require(v["num_frames"] > 0, "num_frames must be positive")
    _require(v["width"] > 0 and v["height"] > 0, "frame size must be positive")
    _require(v["rotation"] in (0, 90, 180, 270), f"rotation must be a right angle, got {v['rotation']}")


def _clip_rules(c: dict[str, Any]) -> None:
    _require(0 <= c["start_s"] < c["end_s"], f"need 0 <= start_s < end_s, got {c['start_s']}..{c['end_s']}")
    _require(0 <= c["start_frame"] < c["end_frame"], "need 0 <= start_frame < end_frame")
    _require(abs(c["duration_s"] - (c["end_s"] - c["start_s"])) < 1e-6, "duration_s != end_s - start_s")
    _require(c["clip_id"].startswith(c["video_id"]), "clip_id must derive from video_id")
    for kf in c["keyframes"]:
        _require(c["start_s"] - 1e-6 <= kf["timestamp_s"] < c["end_s"] + 1e-6,
                 f"keyframe at {kf['timestamp_s']} s lies outside the clip")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise RecordError(message)


RULES: dict[str, tuple[Callable[[dict[str, Any]], None], ...]] = {
    "videos": (_video_rules,),
    "clips": (_clip_rules,),
}
