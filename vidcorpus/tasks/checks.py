"""Checks of `sft` and `rl` rows beyond their Arrow types (the schemas are in `vidcorpus.schemas.tables`).

Ids unique, splits known, media indices in range, edit lists (in the `answer_key`) well formed,
and for RL rows the stored reference answer must earn reward 1 under the row's own rule and
ground truth, so a broken ground truth cannot reach a trainer.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
from pydantic import ValidationError

from vidcorpus.schemas.tables import RL_SCHEMA, SFT_SCHEMA
from vidcorpus.tasks.records import EditList
from vidcorpus.tasks.rewards import REWARD_RULES, score

TABLE_SCHEMAS: dict[str, pa.Schema] = {"sft": SFT_SCHEMA, "rl": RL_SCHEMA}
FAMILIES = {"niah", "order", "grounding", "speech"}


class SchemaError(ValueError):
    """Rows that do not fit their table; the message lists every problem found (up to a cap)."""


def _null_problems(schema: pa.Schema, row: Mapping[str, Any]) -> list[str]:
    return [f"{field.name} is null" for field in schema if not field.nullable and row.get(field.name) is None]


def _media_keys(row: Mapping[str, Any]) -> dict[str, Mapping[str, Any]] | None:
    """The answer key's media recipes by media id; None when the key is not JSON."""
    try:
        key = json.loads(row.get("answer_key") or "")
    except json.JSONDecodeError:
        return None
    return {m.get("media_id"): m for m in key.get("media") or []} if isinstance(key, dict) else None


def _media_problems(row: Mapping[str, Any]) -> list[str]:
    keys = _media_keys(row)
    if keys is None:
        return ["answer_key is not a JSON object"]
    problems = []
    for index, media in enumerate(row.get("media") or []):
        recipe = keys.get(media.get("media_id"))
        if recipe is None:
            problems.append(f"media[{index}] has no recipe in answer_key")
        elif media.get("kind") == "window" and (recipe.get("start_s") is None or recipe.get("end_s") is None
                                                or media.get("uri") is None):
            problems.append(f"media[{index}] window needs a uri and source start_s, end_s")
        elif media.get("kind") == "probe":
            try:
                EditList.model_validate(recipe.get("edit_list") or {})
            except ValidationError as error:
                problems.append(f"media[{index}] edit_list invalid: {error.errors()[0]['msg']}")
    if not row.get("media"):
        problems.append("media is empty")
    return problems


def _message_problems(messages: Sequence[Mapping[str, Any]], media_count: int) -> list[str]:
    problems = []
    for message in messages or []:
        for part in message.get("content") or []:
            index = part.get("media_index")
            if part.get("type") in ("video", "image") and (index is None or not 0 <= index < media_count):
                problems.append(f"{message.get('role')} {part.get('type')} part points at media {index}")
    return problems


def _rl_problems(row: Mapping[str, Any]) -> list[str]:
    problems = []
    rule = row.get("reward_rule")
    if rule not in REWARD_RULES:
        return [f"unknown reward_rule {rule!r}"]
    try:
        json.loads(row.get("ground_truth") or "")
    except json.JSONDecodeError:
        return ["ground_truth is not JSON"]
    if score(rule, row.get("answer"), row.get("ground_truth")) < 1.0 - 1e-9:
        problems.append("reference answer does not earn reward 1 under its own rule")
    if not 0.0 <= float(row.get("difficulty") or 0.0) <= 1.0:
        problems.append("difficulty outside [0, 1]")
    return problems


def row_problems(table: str, row: Mapping[str, Any], splits: Iterable[str] | None = None) -> list[str]:
    """Everything wrong with one row of `table` ('sft' or 'rl'); empty when it is valid."""
    schema = TABLE_SCHEMAS[table]
    problems = [f"missing column {name}" for name in schema.names if name not in row]
    problems += [f"unexpected column {name}" for name in row if name not in schema.names]
    problems += _null_problems(schema, row)
    if row.get("family") not in FAMILIES:
        problems.append(f"unknown family {row.get('family')!r}")
    if splits is not None and row.get("split") not in set(splits):
        problems.append(f"unknown split {row.get('split')!r}")
    if row.get("video_id") not in (row.get("video_ids") or []):
        problems.append("video_id missing from video_ids")
    problems += _media_problems(row)
    media_count = len(row.get("media") or [])
    if table == "sft":
        problems += _message_problems(row.get("messages"), media_count)
        images = sum(turn.get("value", "").count("<image>") for turn in row.get("conversations") or [])
        if images != len(row.get("frames") or []):
            problems.append("conversations' <image> tokens do not match frames")
    else:
        problems += _message_problems(row.get("prompt_messages"), media_count)
        problems += _rl_problems(row)
    return problems


def validate_rows(table: str, rows: Sequence[Mapping[str, Any]], splits: Iterable[str] | None = None) -> pa.Table:
    """The rows as an Arrow table of `table`'s schema; raises SchemaError listing the problems."""
    if table not in TABLE_SCHEMAS:
        raise SchemaError(f"unknown table {table!r}; expected one of {sorted(TABLE_SCHEMAS)}")
    problems, seen = [], set()
    for row in rows:
        sample_id = row.get("sample_id")
        if sample_id in seen:
            problems.append(f"{sample_id}: duplicate sample_id")
        seen.add(sample_id)
        problems += [f"{sample_id}: {p}" for p in row_problems(table, row, splits)]
    if problems:
        raise SchemaError(f"{len(problems)} problem(s) in {table}: " + "; ".join(problems[:20]))
    try:
        return pa.Table.from_pylist(list(rows), schema=TABLE_SCHEMAS[table])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise SchemaError(f"{table}: {error}") from error


def validate_table(table: str, data: pa.Table, splits: Iterable[str] | None = None) -> None:
    """Check a table read back from Parquet: same schema, and every row valid."""
    expected = TABLE_SCHEMAS[table]
    if not data.schema.equals(expected, check_metadata=False):
        raise SchemaError(f"{table}: schema differs from the declared one:\n{data.schema}\nvs\n{expected}")
    validate_rows(table, data.to_pylist(), splits)
