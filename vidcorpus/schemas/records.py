"""Record constructors shared by every stage."""

from __future__ import annotations

from typing import Any


def failure_row(uri: str, stage: str, exc: BaseException, video_id: str | None = None,
                item_id: str | None = None, attempts: int = 1) -> dict[str, Any]:
    """One `failures` row: where (stage), what (error class) and why (message)."""
    return {"uri": uri, "video_id": video_id, "item_id": item_id, "stage": stage,
            "error_class": type(exc).__name__, "message": str(exc) or repr(exc), "attempts": attempts}


def video_result(video: dict[str, Any] | None = None, clips: list[dict[str, Any]] | None = None,
                 files: dict[str, Any] | None = None, failures: list[dict[str, Any]] | None = None,
                 tables: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """What one input contributes to a release: its video row, clip rows, staged files (per clip,
    and `probes` for task media), failures, and rows of the other tables (frames, annotations,
    sft, rl)."""
    return {"video": video, "clips": clips or [], "files": files or {}, "failures": failures or [],
            "tables": tables or {}}
