"""Scan stage: probe a video, then one streaming decode pass that feeds scene detection, frame
statistics, keyframe candidates and the encoders of the clips that will be re-encoded
(`media.pieces`). What the pass leaves behind is small (per-frame arrays, cut indices) plus a
spool of candidate JPEGs and the encoded pieces, staged next to the video's other results.

A failure at either stage becomes one failures row for this video; it never escapes.
"""

from __future__ import annotations

import logging
from array import array
from contextlib import nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from vidcorpus import storage
from vidcorpus.config import BuildConfig
from vidcorpus.media.decode import FrameStream, Geometry
from vidcorpus.media.errors import DecodeError, ImplausibleTiming, TruncatedVideo
from vidcorpus.media.framestats import FrameStatistics
from vidcorpus.media.pieces import Piece, PieceEncoders
from vidcorpus.media.probe import RATE_MISMATCH, open_container, probe
from vidcorpus.media.scenes import MODEL_DETECTORS, SceneCutter
from vidcorpus.media.shotframes import SHOT_FRAMES, ShotFrames, ShotFrameWriter
from vidcorpus.pipelines.discover import Input
from vidcorpus.pipelines.staging import (
    VideoResult,
    failed_result,
    load_staged_result,
    result_fingerprint,
    stage_result,
    staging_dir,
    with_current_uri,
)
from vidcorpus.scoring.footage import FootageSignature
from vidcorpus.scoring.keyframes import Candidate, CandidateSpool
from vidcorpus.tasks.proxy import ProxyWriter

log = logging.getLogger(__name__)
SPOOL = "candidates.bin"


def open_source(uri: str):
    """What PyAV opens: a local path, or a Beam FileSystems stream for remote URIs."""
    return storage.local_path(uri) if storage.is_local(uri) else storage.open_read(uri)


@dataclass
class PassResult:
    """What the single decode pass leaves behind: small per-frame arrays, never pictures."""
    geometry: Geometry
    origin_pts: int
    time_base: Fraction
    pts: np.ndarray
    times: np.ndarray
    keys: np.ndarray
    brightness: np.ndarray
    sharpness: np.ndarray
    motion: np.ndarray
    cuts: list[int]
    end_time: float
    signature: dict[str, Any] | None = None   # dHash sequence (see scoring.footage), for near-duplicate videos
    transitions: list[tuple[int, int]] = field(default_factory=list)
    """[start, end) frames of gradual transitions (model detectors only); no clip covers them."""


@dataclass
class Scanned:
    """A video that went through the decode pass, on its way to segmentation."""
    item: Input
    header: dict[str, Any]
    scan: PassResult
    candidates: list[Candidate]
    spool_uri: str
    shot_frames: ShotFrames | None = None
    """The 48×27 frames TransNetV2 reads, spooled by the pass when a model detector is chosen."""
    pieces: list[Piece] = field(default_factory=list)
    """Clip pieces the pass encoded (`media.pieces`), staged."""

    def jpegs(self, candidates: Iterable[Candidate]) -> Iterator[bytes]:
        """The JPEGs of `candidates`, in the order given, through one open handle on the spool
        (one picture in memory at a time, whatever the video's length)."""
        with storage.open_read(self.spool_uri) as f:
            for c in candidates:
                f.seek(c.offset)
                yield f.read(c.length)


def decode_pass(container, header: dict[str, Any], cfg: BuildConfig, spool: CandidateSpool,
                shots: ShotFrameWriter | None = None, pieces: PieceEncoders | None = None,
                proxy: ProxyWriter | None = None) -> PassResult:
    """The one pass over a video's frames: cuts, statistics, keyframe candidates, the footage
    signature and, when asked, TransNetV2's small frames, the re-encoded clips' pictures and the
    probe proxy."""
    frames = FrameStream(container, cfg.decode.working_size, cfg.decode.threads, header["sample_aspect_ratio"],
                         cfg.decode.timeout_s)
    cutter = SceneCutter(cfg.scenes, header["header_fps"] or 0)
    statistics = FrameStatistics()
    signature = FootageSignature()
    pts, times, keys = array("q"), array("d"), bytearray()
    brightness, sharpness, motion = array("f"), array("f"), array("f")
    for f in frames:
        stats = statistics(f.luma)
        signature.offer(f.t, f.luma, frames.geometry.rotation)
        cut = f.index in cutter.push(f.index, f.small)
        if cut:
            spool.cut()
        if pieces is not None:
            pieces.push(f.index, f.t, f.key, f.frame, frames.geometry, cut)
        spool.offer(f.index, f.t, stats, f.frame, frames.geometry)
        if proxy is not None:
            proxy.push(f.t, f.frame, frames.geometry)
        if shots is not None:
            shots.add(f.small)
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
    if pieces is not None:
        pieces.finish(len(times))
    t = np.frombuffer(times, dtype=np.float64)
    end_time = float(t[-1] + _last_frame_duration(t, header["header_fps"]))
    if proxy is not None:
        proxy.finish(end_time)
    return PassResult(frames.geometry, frames.origin_pts, frames.time_base, np.frombuffer(pts, np.int64), t,
                      np.frombuffer(bytes(keys), np.uint8).astype(bool),
                      np.frombuffer(brightness, np.float32), np.frombuffer(sharpness, np.float32),
                      np.frombuffer(motion, np.float32), sorted(set(cutter.cuts)), end_time, signature.to_record())


def _last_frame_duration(times: np.ndarray, header_fps: float | None) -> float:
    if len(times) > 1:
        return float(np.median(np.diff(times[-16:])))
    return 1.0 / header_fps if header_fps else 0.04


def scan_video(item: Input, cfg: BuildConfig, work_dir: str) -> Scanned | VideoResult:
    """The decode pass of one video, or its failure result."""
    staged = staging_dir(work_dir, item.video_id)
    spool_uri = storage.join(staged, SPOOL)
    shots_uri = storage.join(staged, SHOT_FRAMES)
    wants_shots = cfg.scenes.detector in MODEL_DETECTORS
    stage = "probe"
    pieces = proxy = None
    try:
        with storage.open_write(spool_uri) as spool_file, \
                (storage.open_write(shots_uri) if wants_shots else nullcontext()) as shots_file:
            spool = CandidateSpool(cfg.keyframes, spool_file)
            shots = ShotFrameWriter(shots_file) if wants_shots else None
            with open_container(open_source(item.uri), item.size, cfg.probe.timeout_s) as container:
                header = probe(container, item.size, cfg.probe)
                stage = "decode"
                if cfg.clip_mp4.mode != "off":
                    pieces = PieceEncoders(staged, header["video_codec"], header["header_fps"] or 0, cfg.clip_mp4)
                proxy = ProxyWriter.for_video(staged, header, cfg.tasks)
                result = decode_pass(container, header, cfg, spool, shots, pieces, proxy)
            _check_coverage(header, result, cfg.decode.min_coverage)
        shot_frames = ShotFrames(shots_uri, shots.count) if shots is not None else None
        return Scanned(item, header, result, spool.candidates, spool_uri, shot_frames, pieces.pieces if pieces else [])
    except Exception as exc:  # noqa: BLE001 - one bad video must cost one row, not the run
        if pieces is not None:
            pieces.abort()
        if proxy is not None:
            proxy.abort()
        log.warning("%s failed at %s: %s: %s", item.uri, stage, type(exc).__name__, exc)
        return failed_result(item.uri, stage, exc, item.video_id)


def _check_coverage(header: dict[str, Any], result: PassResult, min_coverage: float) -> None:
    expected = header["header_duration_s"]
    if expected and result.end_time > RATE_MISMATCH * expected + 1:
        raise ImplausibleTiming(f"the frames' timestamps span {result.end_time:.2f} s of a {expected:.2f} s video: "
                                "its frame durations are wrong; re-mux the file with correct timing")
    if expected and result.end_time < min_coverage * expected:
        raise TruncatedVideo(f"decoded {result.end_time:.2f} s of a {expected:.2f} s video "
                             f"(under decode.min_coverage={min_coverage}); the file is truncated or corrupt")


class Scan(beam.DoFn):
    """Input → Scanned, or the staged result of an earlier run (resume), or a failure result.

    A staged failure (a video that produced nothing) is final for its config unless
    `retry_failed`: then the video is processed again. Failures that may not recur (disk,
    permission, network, timeouts) are never staged, so the next run tries again by itself."""

    def __init__(self, cfg: BuildConfig, work_dir: str, retry_failed: bool = False):
        self.cfg, self.work_dir, self.retry_failed = cfg, work_dir, retry_failed
        self.fingerprint = result_fingerprint(cfg)
        self.scanned = Metrics.counter("vidcorpus", "videos_scanned")
        self.resumed = Metrics.counter("vidcorpus", "videos_resumed")

    def process(self, item: Input):
        staged = load_staged_result(self.work_dir, item.video_id, self.fingerprint)
        if staged is not None and (staged["video"] or not self.retry_failed):
            self.resumed.inc()
            yield beam.pvalue.TaggedOutput("done", with_current_uri(staged, item.uri))
            return
        self.scanned.inc()
        out = scan_video(item, self.cfg, self.work_dir)
        if isinstance(out, Scanned):
            yield out
        else:
            yield beam.pvalue.TaggedOutput("done", stage_result(out, self.fingerprint, self.work_dir, item.video_id))
