"""A video's staged state in the work directory: `videos/<video_id>/` holds its keyframe spool,
keyframe JPEGs, clip and probe MP4s, and `result.json`, written once and last, whose presence
(with the current config's fingerprint) marks the video done. A rerun skips such videos, the
progress line counts them, and the writers read their files from here."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, TypedDict

from vidcorpus import storage
from vidcorpus.config import BuildConfig, config_to_dict

RESULT = "result.json"
RESULT_SECTIONS = ("input", "ids", "probe", "decode", "scenes", "keyframes", "clips", "clip", "shards")
CLIP_EXECUTION_KEYS = ("device", "precision", "batch_size", "min_batch_size", "model_copies", "accelerator",
                       "cache_dir")


class VideoResult(TypedDict, total=False):
    """What one input contributes to a release, from scan to write (see `video_result`)."""
    video: Dict[str, Any] | None
    clips: List[Dict[str, Any]]
    files: Dict[str, Any]
    failures: List[Dict[str, Any]]
    tables: Dict[str, List[Dict[str, Any]]]
    usage: Dict[str, Any]
    llm_run: Dict[str, Any]
    probes: Dict[str, str]
    fingerprint: str


def video_result(video: dict[str, Any] | None = None, clips: list[dict[str, Any]] | None = None,
                 files: dict[str, Any] | None = None, failures: list[dict[str, Any]] | None = None,
                 tables: dict[str, list[dict[str, Any]]] | None = None) -> VideoResult:
    """A video's result: its video row, clip rows, staged files (per clip, and `probes` for task
    media), failures, and rows of the other tables (frames, annotations, sft, rl)."""
    return {"video": video, "clips": clips or [], "files": files or {}, "failures": failures or [],
            "tables": tables or {}}


def staging_dir(work_dir: str, video_id: str) -> str:
    return storage.join(work_dir, "videos", video_id)


def result_fingerprint(cfg: BuildConfig) -> str:
    """Hash of the config a staged per-video result depends on: not where or how fast CLIP runs,
    so a job resumed on other hardware (or on Dataflow) reuses what is done."""
    sections = {k: v for k, v in config_to_dict(cfg).items() if k in RESULT_SECTIONS}
    sections["clip"] = {k: v for k, v in sections["clip"].items() if k not in CLIP_EXECUTION_KEYS}
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


def load_staged_result(work_dir: str, video_id: str, fingerprint: str) -> VideoResult | None:
    """The video's staged result when it was made under this fingerprint, else None."""
    uri = storage.join(staging_dir(work_dir, video_id), RESULT)
    if not storage.exists(uri):
        return None
    try:
        result = json.loads(storage.read_bytes(uri))
    except ValueError:
        return None
    return result if result.get("fingerprint") == fingerprint else None


def stage_result(result: VideoResult, fingerprint: str, work_dir: str, video_id: str) -> VideoResult:
    """The result with its config fingerprint, staged as `result.json` (the done marker)."""
    stamped: VideoResult = {**result, "fingerprint": fingerprint}
    storage.write_bytes(storage.join(staging_dir(work_dir, video_id), RESULT),
                        json.dumps(stamped, sort_keys=True).encode())
    return stamped
