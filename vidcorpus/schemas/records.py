"""The one builder of `failures` rows, shared by every stage."""

from __future__ import annotations

from typing import Any


def failure_row(uri: str | None, stage: str, error: BaseException | tuple[str, str], video_id: str | None = None,
                item_id: str | None = None, attempts: int = 1) -> dict[str, Any]:
    """One `failures` row: where (stage), what (error class) and why (message). `error` is the
    exception, or (error class, message) for a failure that raised nothing (a rejected item)."""
    error_class, message = error if isinstance(error, tuple) else (type(error).__name__, plain_message(error))
    return {"uri": uri, "video_id": video_id, "item_id": item_id, "stage": stage,
            "error_class": error_class, "message": message, "attempts": attempts}


def plain_message(exc: BaseException) -> str:
    """The exception as a plain sentence: a pydantic validation error becomes `field: problem`
    pairs, without its input dumps and documentation links."""
    errors = getattr(exc, "errors", None)
    if type(exc).__name__ == "ValidationError" and callable(errors):
        return "; ".join(f"{'.'.join(map(str, e.get('loc', ()))) or 'value'}: {e.get('msg', '')}" for e in errors())
    lines = [line for line in (str(exc) or repr(exc)).splitlines() if "errors.pydantic.dev" not in line]
    return " ".join(line.strip() for line in lines)
