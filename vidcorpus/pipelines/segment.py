"""Segment stage: a scanned video into clips. Scenes from the detector's cuts (stitched, split and
flagged with CLIP when embeddings are present), keyframes per clip, near-duplicate groups,
clip MP4s, then schema validation. The DoFn stages the result (`pipelines.staging`), which
marks the video done.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from itertools import islice
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from vidcorpus import ids, storage
from vidcorpus.config import BuildConfig
from vidcorpus.ids import split_of
from vidcorpus.media.audio import AudioError, can_copy_audio, chosen_track, mux_with_audio
from vidcorpus.media.clips import can_copy, copy_clip, reencode_clips
from vidcorpus.media.scenes import plan_scenes, split_long
from vidcorpus.media.transcripts import with_speech
from vidcorpus.pipelines.embed import Embeddings
from vidcorpus.pipelines.scan import Scanned, open_source
from vidcorpus.pipelines.staging import (
    VideoResult,
    failed_result,
    result_fingerprint,
    stage_result,
    stage_tables,
    staging_dir,
    video_result,
)
from vidcorpus.pipelines.transcripts import subtitle_rows
from vidcorpus.schemas import RecordError, check_record
from vidcorpus.schemas.records import failure_row
from vidcorpus.scoring.keyframes import Candidate, select_uniform

log = logging.getLogger(__name__)


def segment_video(scanned: Scanned, cfg: BuildConfig, work_dir: str, embeddings: Embeddings | None = None,
                  text: np.ndarray | None = None) -> VideoResult:
    """Clips of one scanned video (or its failure result), staged under the work directory."""
    item = scanned.item
    out_dir = staging_dir(work_dir, item.video_id)
    stage = "scenes"
    try:
        spans = clip_spans(scanned, cfg, embeddings)
        stage = "keyframes"
        video = video_row(scanned, cfg, len(spans))
        clips, files, frames = [], {}, []
        rows = [clip_row(scanned, index, start, end, cfg, video["split"], embeddings, text)
                for index, (start, end, _) in enumerate(spans)]
        keyframe_jpegs = scanned.jpegs(c for _, chosen in rows for c in chosen)
        for (clip, chosen), (_, _, transition) in zip(rows, spans):
            if embeddings is not None:
                clip["is_transition"] = transition
                frames += frame_rows(scanned, clip, embeddings)
            jpegs = list(islice(keyframe_jpegs, len(chosen)))
            clips.append(clip)
            files[clip["clip_id"]] = {"jpg": _stage_keyframes(out_dir, clip["clip_id"], jpegs),
                                      "bytes": sum(map(len, jpegs)), "candidates": candidate_refs(scanned, clip)}
        if embeddings is not None:
            _mark_duplicates(clips, cfg.clip_model.duplicate_threshold)
        stage = "subtitles"
        transcripts, failures = subtitle_rows(scanned)
        clips = with_speech(clips, transcripts, _audio_language(scanned, cfg))
        stage = "clips"
        if cfg.clip_mp4.mode != "off":
            uris = write_clip_mp4s(clips, scanned, cfg, out_dir)
            stage = "audio"
            failures += add_clip_audio(clips, uris, scanned, cfg)
            for clip, uri in zip(clips, uris):
                clip_files = files[clip["clip_id"]]
                clip_files.update(mp4=f"{clip['clip_id']}.mp4", bytes=clip_files["bytes"] + storage.size_of(uri))
        stage = "validate"
        outcome = video_result(video, clips, files, failures, tables={"frames": frames, "transcripts": transcripts})
        outcome["signature"] = scanned.scan.signature
        _validate(outcome, item.uri)
        if embeddings is not None:
            outcome = stage_tables(outcome, work_dir, item.video_id, ("frames",))
    except Exception as exc:  # noqa: BLE001 - one bad video must cost one row, not the run
        log.warning("%s failed at %s: %s: %s", item.uri, stage, type(exc).__name__, exc)
        outcome = failed_result(item.uri, stage, exc, item.video_id)
    return outcome


def clip_spans(scanned: Scanned, cfg: BuildConfig, embeddings: Embeddings | None) -> list[tuple[int, int, bool]]:
    """[start_frame, end_frame) of each clip and whether it is a transition. With CLIP, detector
    scenes are stitched (one event over-split into shots) and transitions marked or dropped, on
    the candidates' embeddings. Either way, scenes over `scenes.max_scene_s` are then split."""
    scan = scanned.scan
    if embeddings is None:
        scenes = plan_scenes(scan.cuts, scan.times, scan.end_time, cfg.scenes.min_scene_s, cfg.scenes.max_scene_s,
                             scan.transitions)
        return [(a, b, False) for a, b in scenes]
    from vidcorpus.scoring.stitching import plan_scenes_with_config

    scenes = plan_scenes(scan.cuts, scan.times, scan.end_time, cfg.scenes.min_scene_s, None, scan.transitions)
    bounds = [(_time(scan, a), _time(scan, b)) for a, b in scenes]
    times = np.array([c.t for c in scanned.candidates])
    spans = []
    for s in plan_scenes_with_config(bounds, times, embeddings.matrix, cfg.clip_model):
        a, b = _frame_at(scan, s.start_s), _frame_at(scan, s.end_s)
        if b > a:
            parts = split_long((a, b), scan.times, scan.end_time, cfg.scenes.max_scene_s)
            spans += [(start, end, bool(s.is_transition)) for start, end in parts]
    return spans


def _time(scan, frame: int) -> float:
    return float(scan.times[frame]) if frame < len(scan.times) else scan.end_time


def _frame_at(scan, t: float) -> int:
    """The first frame at or after `t` (the end of the video maps to the frame count)."""
    return int(np.searchsorted(scan.times, t - 1e-9, side="left"))


def video_row(scanned: Scanned, cfg: BuildConfig, num_clips: int) -> dict[str, Any]:
    item, header, scan = scanned.item, scanned.header, scanned.scan
    display_w, display_h = scan.geometry.display_size
    n = len(scan.times)
    return {
        "video_id": item.video_id,
        "uri": item.uri,
        "split": split_of(item.video_id, cfg.shards.splits),
        "license": cfg.input.license,
        "size_bytes": item.size,
        "container": header["container"],
        "duration_s": scan.end_time,
        "fps": n / scan.end_time,
        "is_vfr": is_variable_rate(scan.times),
        "num_frames": n,
        "width": header["width"],
        "height": header["height"],
        "display_width": display_w,
        "display_height": display_h,
        "rotation": scan.geometry.rotation,
        "sample_aspect_ratio": header["sample_aspect_ratio"],
        "video_codec": header["video_codec"],
        "pix_fmt": header["pix_fmt"],
        "bit_rate": header["bit_rate"],
        "start_time_s": float(scan.origin_pts * scan.time_base),
        "has_audio": header["has_audio"],
        "audio_codec": header["audio_codec"],
        "audio_sample_rate": header["audio_sample_rate"],
        "audio_channels": header["audio_channels"],
        "audio_streams": header["audio_streams"],
        "num_clips": num_clips,
        "dup_of": None,
        "overlap_s": None,
        "transitions": [{"start_s": _time(scan, a), "end_s": _time(scan, b), "start_frame": a, "end_frame": b}
                        for a, b in scan.transitions],
    }


def is_variable_rate(times: np.ndarray) -> bool:
    """Frame intervals that differ by more than 10% (and 2 ms, above timestamp rounding)."""
    if len(times) < 3:
        return False
    deltas = np.diff(times)
    return float(deltas.max() - deltas.min()) > max(0.1 * float(np.median(deltas)), 0.002)


def clip_row(scanned: Scanned, index: int, start: int, end: int, cfg: BuildConfig, split: str,
             embeddings: Embeddings | None, text: np.ndarray | None) -> tuple[dict[str, Any], list[Candidate]]:
    scan, video_id = scanned.scan, scanned.item.video_id
    start_s, end_s = _time(scan, start), _time(scan, end)
    chosen = choose_keyframes(scanned.candidates, start_s, end_s, cfg, embeddings, text)
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
        "detector": cfg.scenes.detector + ("+clip" if embeddings is not None else ""),
        "mean_motion": float(scan.motion[span][1:].mean()) if end - start > 1 else 0.0,
        "mean_brightness": float(scan.brightness[span].mean()),
        "mean_sharpness": float(scan.sharpness[span].mean()),
        "keyframes": [{"timestamp_s": c.t, "frame_index": c.index, "brightness": c.brightness,
                       "sharpness": c.sharpness, "mode": mode, "score": score} for c, mode, score in chosen],
        "clip_mode": "off",
        "audio_mode": None,
        "speech": None,
        "shard": None,
    }
    if embeddings is not None:
        inside = _inside(scanned.candidates, start_s, end_s)
        row["embedding"] = _clip_embedding(embeddings.matrix[inside.start:inside.stop]) if len(inside) else None
    return row, [c for c, _, _ in chosen]


def choose_keyframes(candidates: list[Candidate], start_s: float, end_s: float, cfg: BuildConfig,
                     embeddings: Embeddings | None, text: np.ndarray | None) -> list[tuple[Candidate, str, float]]:
    """(candidate, mode, score) for the clip's keyframes under `keyframes.mode`."""
    k, mode = cfg.keyframes.k, cfg.keyframes.mode
    inside = _inside(candidates, start_s, end_s)
    if mode == "uniform" or embeddings is None:
        return [(c, "uniform", s) for c, s in select_uniform(candidates[inside.start:inside.stop], start_s, end_s, k)]
    from vidcorpus.scoring.selection import select_keyframes_by_embedding

    usable = [i for i in inside if candidates[i].usable] or list(inside)
    if not usable:
        return []
    times = np.array([candidates[i].t for i in usable])
    picks = select_keyframes_by_embedding(mode, times, embeddings.matrix[usable], k,
                                          diverse_threshold=cfg.clip_model.diverse_threshold, text_embeddings=text,
                                          coverage_weight=cfg.clip_model.query_coverage_weight, span=(start_s, end_s))
    return [(candidates[usable[p.position]], p.mode, p.score) for p in picks]


def _inside(candidates: list[Candidate], start_s: float, end_s: float) -> range:
    """Indices of the candidates in [start_s, end_s); candidates are in time order."""
    return range(bisect_left(candidates, start_s, key=_time_of), bisect_left(candidates, end_s, key=_time_of))


def _time_of(candidate: Candidate) -> float:
    return candidate.t


def _clip_embedding(matrix: np.ndarray) -> list[float]:
    from vidcorpus.scoring.duplicates import clip_embedding
    return clip_embedding(matrix).astype(np.float32).tolist()


def _mark_duplicates(clips: list[dict[str, Any]], threshold: float) -> None:
    """`dup_group` = the clip id of the earliest clip a viewer could not tell this one from."""
    from vidcorpus.scoring.duplicates import duplicate_group_ids

    vectors = [np.asarray(c["embedding"], np.float32) if c["embedding"] else None for c in clips]
    for clip, group in zip(clips, duplicate_group_ids([c["clip_id"] for c in clips], vectors, threshold)):
        clip["dup_group"] = group


def frame_rows(scanned: Scanned, clip: dict[str, Any], embeddings: Embeddings) -> list[dict[str, Any]]:
    rows = []
    for i in _inside(scanned.candidates, clip["start_s"], clip["end_s"]):
        c = scanned.candidates[i]
        scores = embeddings.query_scores[i].astype(np.float32).tolist() if embeddings.query_scores is not None else []
        rows.append({"clip_id": clip["clip_id"], "video_id": clip["video_id"], "timestamp_s": c.t,
                     "frame_index": c.index, "brightness": c.brightness, "sharpness": c.sharpness,
                     "embedding": embeddings.matrix[i].tolist(), "scores": scores})
    return rows


def candidate_refs(scanned: Scanned, clip: dict[str, Any]) -> list[list[float]]:
    """[time, spool offset, length] of the clip's usable candidates (all of them when none is
    usable): what the LLM stage samples its frames from, without decoding again."""
    inside = [scanned.candidates[i] for i in _inside(scanned.candidates, clip["start_s"], clip["end_s"])]
    usable = [c for c in inside if c.usable] or inside
    return [[c.t, c.offset, c.length] for c in usable]


def _stage_keyframes(out_dir: str, clip_id: str, jpegs: list[bytes]) -> list[str]:
    names = []
    for i, jpeg in enumerate(jpegs):
        name = f"{clip_id}.{i}.jpg"
        storage.write_bytes(storage.join(out_dir, name), jpeg)
        names.append(name)
    return names


def _audio_language(scanned: Scanned, cfg: BuildConfig) -> str | None:
    track = chosen_track(scanned.header["audio_streams"], cfg.audio.stream)
    return track["language"] if track else None


def write_clip_mp4s(clips: list[dict[str, Any]], scanned: Scanned, cfg: BuildConfig, out_dir: str) -> list[str]:
    """Stage each clip's video-only MP4 as `<clip_id>.mp4` under `out_dir` and return their URIs, in order:
    a stream copy where the cut allows it (`clips.mode: copy`), else the piece the decode pass
    encoded for it, else one re-encoding read over the video for the remaining clips. Sets each
    clip's `clip_mode`; pieces no clip took are deleted."""
    scan, header = scanned.scan, scanned.header
    n = len(scan.times)
    pieces = {(p.start, p.end): p.uri for p in scanned.pieces}
    uris = [storage.join(out_dir, f"{clip['clip_id']}.mp4") for clip in clips]
    unencoded = []
    for clip, uri in zip(clips, uris):
        start, end = clip["start_frame"], clip["end_frame"]
        copy = cfg.clip_mp4.mode == "copy" and can_copy(header["video_codec"], scan.geometry,
                                                     bool(scan.keys[start]), end >= n or bool(scan.keys[end]))
        clip["clip_mode"] = "copy" if copy else "reencode"
        if copy:
            with storage.local_file(uri) as target:
                copy_clip(open_source(scanned.item.uri), int(scan.pts[start]), int(scan.pts[end]) if end < n else None,
                          target.path)
        elif (start, end) in pieces:
            storage.rename(pieces.pop((start, end)), uri)
        else:
            unencoded.append((clip, uri))
    if unencoded:
        _reencode_again(scanned, cfg, unencoded)
    for uri in pieces.values():
        storage.delete(uri)
    return uris


def add_clip_audio(clips: list[dict[str, Any]], uris: list[str], scanned: Scanned,
                   cfg: BuildConfig) -> list[dict[str, Any]]:
    """Put the chosen audio track (`audio.stream`) beside each clip's picture, in sync (see
    `media.audio`), and set each clip's `audio_mode`. All clips of a video get their sound or
    none does: a track that cannot be read costs one failures row (stage `audio`) and leaves the
    clips video-only. Returns those failures rows."""
    track = chosen_track(scanned.header["audio_streams"], cfg.audio.stream)
    if not cfg.audio.enabled or track is None or not clips:
        return []
    scan = scanned.scan
    origin_s = float(scan.origin_pts * scan.time_base)
    staged = [uri[:-len(".mp4")] + ".audio.mp4" for uri in uris]
    try:
        for clip, uri, target_uri in zip(clips, uris, staged):
            copy = can_copy_audio(track["codec"], clip["clip_mode"] == "copy")
            with storage.local_file(target_uri) as target:
                mux_with_audio(open_source(uri), open_source(scanned.item.uri), track["index"], origin_s,
                               clip["start_s"], clip["end_s"], copy, target.path)
            clip["audio_mode"] = "copy" if copy else "reencode"
    except AudioError as exc:
        for clip, target_uri in zip(clips, staged):
            clip["audio_mode"] = None
            if storage.exists(target_uri):
                storage.delete(target_uri)
        return [failure_row(scanned.item.uri, "audio", exc, scanned.item.video_id)]
    for uri, target_uri in zip(uris, staged):
        storage.rename(target_uri, uri)
    return []


def _reencode_again(scanned: Scanned, cfg: BuildConfig, clips: list[tuple[dict[str, Any], str]]) -> None:
    """Clips the decode pass did not encode, from a second reading of their frames."""
    scan = scanned.scan
    with storage.local_files([uri for _, uri in clips]) as paths:
        reencode_clips(open_source(scanned.item.uri), scan.geometry, scan.origin_pts,
                       [(c["start_s"], c["end_s"]) for c, _ in clips], scan.times[scan.keys],
                       scanned.header["header_fps"] or 0, cfg.clip_mp4, paths)


def _validate(outcome: dict[str, Any], uri: str) -> None:
    """A video row that fails its schema fails the video; a bad clip row drops that clip (and
    its frames) only. Rows are replaced by their schema-conformed form."""
    outcome["video"] = check_record("videos", outcome["video"])
    kept = []
    for clip in outcome["clips"]:
        try:
            kept.append(check_record("clips", clip))
        except RecordError as exc:
            outcome["failures"].append(failure_row(uri, "validate", exc, clip["video_id"], clip["clip_id"]))
            outcome["files"].pop(clip["clip_id"], None)
    outcome["clips"] = kept
    alive = {c["clip_id"] for c in kept}
    outcome["tables"]["frames"] = [check_record("frames", f) for f in outcome["tables"]["frames"]
                                   if f["clip_id"] in alive]
    outcome["tables"]["transcripts"] = [check_record("transcripts", t) for t in outcome["tables"]["transcripts"]]


class Segment(beam.DoFn):
    """Scanned (with its CLIP embeddings, when on) → the video's staged result."""

    def __init__(self, cfg: BuildConfig, work_dir: str, text=None):
        self.cfg, self.work_dir, self.text = cfg, work_dir, text
        self.fingerprint = result_fingerprint(cfg)
        self.videos = Metrics.counter("vidcorpus", "videos")
        self.clips = Metrics.counter("vidcorpus", "clips")
        self.failed = Metrics.counter("vidcorpus", "videos_failed")

    def process(self, element):
        scanned, embeddings = element if isinstance(element, tuple) else (element, None)
        result = segment_video(scanned, self.cfg, self.work_dir, embeddings, self.text)
        if result["video"]:
            self.videos.inc()
            self.clips.inc(len(result["clips"]))
        else:
            self.failed.inc()
        yield stage_result(result, self.fingerprint, self.work_dir, scanned.item.video_id)
