"""Probe proxies: a video's frames at probe size on the probe frame grid, encoded during the
decode pass, so written probes never decode their source again.

A proxy holds, for every grid time j / fps of the video, the latest source frame shown at that
time (as `render.SourceVideo.frames_at` picks it), upright and covering the probe size, encoded
with the probes' own spliceable settings (`media.splice`): one-second closed GOPs starting at
frame 0. Probe haystacks start on that grid (`niah.plan_niah_probes`), so a probe's plain
haystack is stream-copied from the proxy, and its needle frames, the needle gates and the
frames up to the next IDR frame are read from the proxy's small pictures instead of the source.

A proxy is made only where it pays: the video has room for a probe and is no longer than its
probes could cover (`probes_per_video` x the longest haystack); a longer video's probes read
their haystacks from the source, as do probes whose proxy is missing (an earlier run, another
probe size). A proxy that fails to encode is dropped with a warning: the video loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from vidcorpus import storage
from vidcorpus.config.tasks import NiahConfig, TasksConfig
from vidcorpus.media.decode import Geometry
from vidcorpus.media.splice import SpliceableEncoder, frame_rate
from vidcorpus.tasks.niah import probe_geometry
from vidcorpus.tasks.render import SHOWN_EPS_S, cover_picture, probe_gop

log = logging.getLogger(__name__)

FPS_MARGIN = 1.25
"""A proxy is made before the video's frame rate is measured, so only when the header's rate
clears `max_fps` by this factor: the probe rate is then `max_fps` whatever the measurement."""


def proxy_name(fps: float, width: int, height: int, config: NiahConfig) -> str:
    """The proxy's file name: every setting its bytes depend on, so a changed one finds none."""
    rate = frame_rate(fps)
    return (f"probe-proxy-{rate.numerator}_{rate.denominator}fps-{width}x{height}"
            f"-crf{config.crf}-{config.preset}-t{config.encode_threads}.mp4")


def proxy_uri(directory: str, video: Mapping[str, Any], config: NiahConfig) -> str:
    """Where a video's proxy is staged, for the probe geometry of its record."""
    return storage.join(directory, proxy_name(*probe_geometry(video, config), config))


class ProxyWriter:
    """Fed every frame of the decode pass (seconds from the first frame); writes the proxy to its
    staged file. `for_video` says whether the video gets one."""

    def __init__(self, directory: str, header: Mapping[str, Any], config: NiahConfig):
        self.directory, self.config = directory, config
        self.sar = float(header.get("sample_aspect_ratio") or 1.0) or 1.0
        self.fps = float(config.fps or config.max_fps)
        self._target: storage.local_file | None = None
        self._encoder: SpliceableEncoder | None = None
        self._held: av.VideoFrame | None = None
        self._held_picture: av.VideoFrame | None = None
        self._next = 0
        self._failed = False
        self._scaler = VideoReformatter()  # its own: the keyframe thread may be scaling the same frame

    @classmethod
    def for_video(cls, directory: str, header: Mapping[str, Any], config: TasksConfig) -> ProxyWriter | None:
        niah = config.niah
        if not (config.enabled and niah.enabled and config.media_mode == "written" and niah.probes_per_video):
            return None
        duration, header_fps = header.get("header_duration_s"), header.get("header_fps")
        longest = max(niah.grid.haystack_s)
        if not duration or not min(niah.grid.haystack_s) <= duration <= niah.probes_per_video * longest:
            return None
        if niah.fps is None and not (header_fps and header_fps >= FPS_MARGIN * niah.max_fps):
            return None
        return cls(directory, header, niah)

    def push(self, t: float, frame: av.VideoFrame, geometry: Geometry) -> None:
        if self._failed:
            return
        try:
            if self._encoder is None:
                self._open(geometry)
            self._emit_until(t)
            self._held, self._held_picture = frame, None
        except Exception as exc:  # noqa: BLE001 - probes then read the source
            self._fail(exc)

    def finish(self, end_s: float) -> None:
        """The video's frames end at `end_s`: fill the grid to there and stage the file."""
        if self._failed or self._encoder is None:
            return
        try:
            self._emit_until(end_s)
            self._encoder.close()
            self._target.commit()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def abort(self) -> None:
        if self._encoder is not None:
            self._encoder.abort()
        if self._target is not None:
            self._target.discard()

    def _open(self, geometry: Geometry) -> None:
        width, height = geometry.display_size
        video = {"fps": self.fps, "display_width": width, "display_height": height}
        fps, self.width, self.height = probe_geometry(video, self.config)
        self._target = storage.local_file(storage.join(self.directory, proxy_name(fps, self.width, self.height,
                                                                                  self.config)))
        self._encoder = SpliceableEncoder(self._target.path, fps, self.width, self.height, crf=self.config.crf,
                                          preset=self.config.preset, threads=self.config.encode_threads,
                                          gop=probe_gop(fps))

    def _emit_until(self, t: float) -> None:
        """Grid times before `t` show the held frame (the latest at or before each of them)."""
        while self._held is not None and self._next / self.fps < t - SHOWN_EPS_S:
            if self._held_picture is None:
                self._held_picture = cover_picture(self._held, self.sar, self.width, self.height, self._scaler)
            self._encoder.add(self._held_picture)
            self._next += 1

    def _fail(self, exc: Exception) -> None:
        log.warning("probe proxy dropped (probes will read the source): %s: %s", type(exc).__name__, exc)
        self._failed = True
        self.abort()
