"""Analyze one video: probe, one streaming decode pass (scene cuts, frame statistics, keyframe
candidates), scenes, keyframes, clip MP4s. Results are staged under the work directory and
summarised in `result.json`, written last, whose presence marks the video done.

A failure at any stage becomes one failures row for this video; it never escapes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from array import array
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from vidcorpus import ids, storage
from vidcorpus.config import BuildConfig
from vidcorpus.media.clips import can_copy, copy_clip, reencode_clip
from vidcorpus.media.decode import FrameStream, Geometry
from vidcorpus.media.errors import DecodeError, TruncatedVideo
from vidcorpus.media.probe import open_container, probe
from vidcorpus.media.scenes import SceneCutter, plan_scenes
from vidcorpus.schemas import RecordError, check_record
from vidcorpus.schemas.records import failure_row, video_result
from vidcorpus.scoring.framestats import FrameStatistics
from vidcorpus.scoring.keyframes import CandidateSpool, select_uniform
from vidcorpus.splits import split_of

log = logging.getLogger(__name__)
RESULT = "result.json"


@dataclass(frozen=True)
class Input:
    uri: str
    size: int
    video_id: str


def staging_dir(work_dir: str, video_id: str) -> str:
    return storage.join(work_dir, "videos", video_id)


@dataclass
class PassResult:
    """What the single decode pass leaves behind: small per-frame arrays, never pictures."""
    geometry: Geometry
    origin_pts: int
    time_base: Fraction
    pts: array
    times: np.ndarray
    keys: bytearray
    brightness: np.ndarray
    sharpness: np.ndarray
    motion: np.ndarray
    cuts: list[int]
    end_time: float


def decode_pass(container, header: dict[str, Any], cfg: BuildConfig, spool: CandidateSpool) -> PassResult:
    frames = FrameStream(container, cfg.decode.working_width, cfg.decode.threads, header["sample_aspect_ratio"])
    cutter = SceneCutter(cfg.scenes, header["header_fps"] or 0)
    statistics = FrameStatistics()
    pts, times, keys = array("q"), array("d"), bytearray()
    brightness, sharpness, motion = array("f"), array("f"), array("f")
    for f in frames:
        stats = statistics(f.luma)
        if f.index in cutter.push(f.index, f.small):
            spool.cut()
        spool.offer(f.index, f.t, stats, f.frame, frames.geometry)
        pts.append(f.pts)
        times.append(f.t)
        keys.append(f.key)
        brightness.append(stats.brightness)
        sharpness.append(stats.sharpness)
        motion.append(stats.motion)
    if not times:
        raise DecodeError("no frame could be decoded")
    cutter.finish()
    spool.finish()
    t = np.frombuffer(times, dtype=np.float64)
    return PassResult(frames.geometry, frames.origin_pts, frames.time_base, pts, t, keys,
                      np.frombuffer(brightness, np.float32), np.frombuffer(sharpness, np.float32),
                      np.frombuffer(motion, np.float32), sorted(set(cutter.cuts)),
                      float(t[-1] + _last_frame_duration(t, header["header_fps"])))


def _last_frame_duration(times: np.ndarray, header_fps: float | None) -> float:
    if len(times) > 1:
        return float(np.median(np.diff(times[-16:])))
    return 1.0 / header_fps if header_fps else 0.04


def is_variable_rate(times: np.ndarray) -> bool:
    """Frame intervals that differ by more than 10% (and 2 ms, above timestamp rounding)."""
    if len(times) < 3:
        return False
    deltas = np.diff(times)
    spread = float(deltas.max() - deltas.min())
    return spread > max(0.1 * float(np.median(deltas)), 0.002)


def analyze_video(item: Input, cfg: BuildConfig, work_dir: str) -> dict[str, Any]:
    """Stage one video and return its result (also written to `result.json`)."""
    out_dir = staging_dir(work_dir, item.video_id)
    stage = "probe"
    try:
        source = storage.local_path(item.uri) if storage.is_local(item.uri) else storage.open_read(item.uri)
        with tempfile.TemporaryFile() as spool_file:
            spool = CandidateSpool(cfg.keyframes, spool_file)
            with open_container(source, item.size) as container:
                header = probe(container, item.size, cfg.probe)
                stage = "decode"
                result = decode_pass(container, header, cfg, spool)
            _check_coverage(header, result, cfg.decode.min_coverage)
            stage = "scenes"
            scenes = plan_scenes(result.cuts, result.times, result.end_time,
                                 cfg.scenes.min_scene_s, cfg.scenes.max_scene_s)
            stage = "keyframes"
            video = video_row(item, cfg, header, result, len(scenes))
            clips, files = [], {}
            for index, (start, end) in enumerate(scenes):
                clip, jpegs = clip_row(item.video_id, index, start, end, result, cfg, video["split"], spool)
                clips.append(clip)
                files[clip["clip_id"]] = {"jpg": _stage_keyframes(out_dir, clip["clip_id"], jpegs),
                                          "bytes": sum(map(len, jpegs))}
        stage = "clips"
        if cfg.clips.mode != "off":
            for clip in clips:
                name, size = _stage_clip(out_dir, clip, item, header, result, cfg)
                files[clip["clip_id"]].update(mp4=name, bytes=files[clip["clip_id"]]["bytes"] + size)
        stage = "validate"
        outcome = video_result(video, clips, files)
        _validate(outcome, item.uri)
    except Exception as exc:  # noqa: BLE001 - one bad video must cost one row, not the run
        log.warning("%s failed at %s: %s: %s", item.uri, stage, type(exc).__name__, exc)
        outcome = video_result(failures=[failure_row(item.uri, stage, exc, item.video_id)])
    storage.write_bytes(storage.join(out_dir, RESULT), json.dumps(outcome, sort_keys=True).encode())
    return outcome


def _check_coverage(header: dict[str, Any], result: PassResult, min_coverage: float) -> None:
    expected = header["header_duration_s"]
    if expected and result.end_time < min_coverage * expected:
        raise TruncatedVideo(f"decoded {result.end_time:.2f} s of a {expected:.2f} s video "
                             f"(under decode.min_coverage={min_coverage}); the file is truncated or corrupt")


def video_row(item: Input, cfg: BuildConfig, header: dict[str, Any], result: PassResult, num_clips: int) -> dict[str, Any]:
    g = result.geometry
    display_w, display_h = g.display_size
    n = len(result.times)
    return {
        "video_id": item.video_id,
        "uri": item.uri,
        "license": cfg.input.license,
        "size_bytes": item.size,
        "container": header["container"],
        "duration_s": result.end_time,
        "fps": n / result.end_time,
        "is_vfr": is_variable_rate(result.times),
        "num_frames": n,
        "width": header["width"],
        "height": header["height"],
        "display_width": display_w,
        "display_height": display_h,
        "rotation": g.rotation,
        "sample_aspect_ratio": header["sample_aspect_ratio"],
        "video_codec": header["video_codec"],
        "pix_fmt": header["pix_fmt"],
        "bit_rate": header["bit_rate"],
        "start_time_s": float(result.origin_pts * result.time_base),
        "has_audio": header["has_audio"],
        "audio_codec": header["audio_codec"],
        "audio_sample_rate": header["audio_sample_rate"],
        "audio_channels": header["audio_channels"],
        "num_clips": num_clips,
        "split": split_of(item.video_id, cfg.shards.splits),
    }


def clip_row(video_id: str, index: int, start: int, end: int, result: PassResult, cfg: BuildConfig,
             split: str, spool: CandidateSpool) -> tuple[dict[str, Any], list[bytes]]:
    start_s = float(result.times[start])
    end_s = float(result.times[end]) if end < len(result.times) else result.end_time
    chosen = select_uniform(spool.candidates, start_s, end_s, cfg.keyframes.k)
    keyframes = [{"timestamp_s": c.t, "frame_index": c.index, "brightness": c.brightness,
                  "sharpness": c.sharpness, "mode": "uniform", "score": score} for c, score in chosen]
    span = slice(start, end)
    row = {
        "clip_id": ids.clip_id(video_id, index),
        "video_id": video_id,
        "index": index,
        "split": split,
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": end_s - start_s,
        "start_frame": start,
        "end_frame": end,
        "detector": cfg.scenes.detector,
        "mean_motion": float(result.motion[span][1:].mean()) if end - start > 1 else 0.0,
        "mean_brightness": float(result.brightness[span].mean()),
        "mean_sharpness": float(result.sharpness[span].mean()),
        "keyframes": keyframes,
        "clip_mode": "off",
        "shard": None,
    }
    return row, [spool.read(c) for c, _ in chosen]


def _stage_keyframes(out_dir: str, clip_id: str, jpegs: list[bytes]) -> list[str]:
    names = []
    for i, jpeg in enumerate(jpegs):
        name = f"{clip_id}.{i}.jpg"
        storage.write_bytes(storage.join(out_dir, name), jpeg)
        names.append(name)
    return names


def _stage_clip(out_dir: str, clip: dict[str, Any], item: Input, header: dict[str, Any],
                result: PassResult, cfg: BuildConfig) -> tuple[str, int]:
    start, end = clip["start_frame"], clip["end_frame"]
    n = len(result.times)
    source = storage.local_path(item.uri) if storage.is_local(item.uri) else storage.open_read(item.uri)
    copy = cfg.clips.mode == "copy" and can_copy(header["video_codec"], result.geometry,
                                                 bool(result.keys[start]), end >= n or bool(result.keys[end]))
    if copy:
        data = copy_clip(source, result.pts[start], result.pts[end] if end < n else None)
    else:
        fps = n / result.end_time
        data = reencode_clip(source, result.geometry, result.origin_pts, clip["start_s"], clip["end_s"], fps, cfg.clips)
    clip["clip_mode"] = "copy" if copy else "reencode"
    name = f"{clip['clip_id']}.mp4"
    storage.write_bytes(storage.join(out_dir, name), data)
    return name, len(data)


def _validate(outcome: dict[str, Any], uri: str) -> None:
    """A video row that fails its schema fails the video; a bad clip row drops that clip only."""
    outcome["video"] = check_record("videos", outcome["video"])
    kept = []
    for clip in outcome["clips"]:
        try:
            kept.append(check_record("clips", clip))
        except RecordError as exc:
            outcome["failures"].append(failure_row(uri, "validate", exc, clip["video_id"], clip["clip_id"]))
            outcome["files"].pop(clip["clip_id"], None)
    outcome["clips"] = kept
