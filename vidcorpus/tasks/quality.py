"""Needle quality gates: a probe whose needle could not be seen, or whose question has no clean
premise, is dropped before anyone trains on it.

Planning reads no pixels, so the gates run after it, on the frames a probe would show (decoded
from the sources with the renderer's own reader, only around the needles: a few seconds a probe):

- foreign needles and the haystack around them (a second each side) must pass floors of
  brightness (mean luma), contrast (luma standard deviation), sharpness (Laplacian variance at
  160 px) and motion (mean absolute change between frames): no splicing in a black or frozen
  second, no haystack in which nothing could stand out;
- rendered needles get the box colour (with black or white text) whose WCAG contrast against the
  picture around the box is highest on the worst frame, and must reach `min_box_contrast`; the
  pictures under the box must not already show text (share of edge pixels), or "what does the
  box say" has two answers.

Every kept probe records what was measured in `ProbeSpec.quality` (``contrast`` is the WCAG ratio
of its boxes, or the RMS contrast of its foreign needle); every rejection names its gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from vidcorpus.config.tasks import NeedleGates
from vidcorpus.media.needle import box_pixels
from vidcorpus.tasks.records import EditList, ProbeSpec, Segment
from vidcorpus.tasks.render import Opener, SourceVideo, open_local, segment_times

BOX_COLOURS = ((255, 255, 255), (0, 0, 0), (255, 214, 0), (0, 38, 120))
"""Box fills tried for rendered needles; the text is black or white, whichever reads better."""
STATS_SIDE = 160
FramesReader = Callable[[EditList, Sequence[Segment], float, float], list[np.ndarray]]


@dataclass(frozen=True)
class GateResult:
    spec: ProbeSpec | None      # the probe with its quality (and needle colours), None when rejected
    rejected_by: str | None     # the first gate it failed


def relative_luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB values (..., 3) in 0-255."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a: float, b: float) -> float:
    """WCAG contrast ratio of two relative luminances (1 to 21)."""
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def frame_stats(frames: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean brightness, contrast, sharpness and motion of RGB frames, measured at 160 px."""
    grey = []
    for rgb in frames:
        scale = STATS_SIDE / max(rgb.shape[:2])
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        grey.append(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    motion = [float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(grey, grey[1:])]
    return {
        "brightness": float(np.mean([g.mean() for g in grey])),
        "contrast": float(np.mean([g.std() for g in grey])),
        "sharpness": float(np.mean([cv2.Laplacian(g, cv2.CV_64F).var() for g in grey])),
        "motion": float(np.mean(motion)) if motion else 0.0,
    }


def _ring(box: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """Mask of the picture around a box (a margin of a third of its size), the box left out."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) // 3 + 2, (y1 - y0) // 3 + 2
    mask = np.zeros((height, width), bool)
    mask[max(0, y0 - my):min(height, y1 + my), max(0, x0 - mx):min(width, x1 + mx)] = True
    mask[y0:y1, x0:x1] = False
    return mask


def best_box_colours(frames: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> tuple[
        tuple[int, int, int], tuple[int, int, int], float]:
    """(box fill, text colour, worst-frame WCAG contrast of the fill against its surroundings)."""
    height, width = frames[0].shape[:2]
    ring = _ring(box_pixels(box, width, height), width, height)
    around = [float(relative_luminance(f[ring]).mean()) for f in frames]
    scored = []
    for fill in BOX_COLOURS:
        own = float(relative_luminance(np.array(fill)))
        scored.append((min(contrast_ratio(own, lum) for lum in around), fill))
    worst, fill = max(scored, key=lambda s: s[0])
    own = float(relative_luminance(np.array(fill)))
    text = (0, 0, 0) if contrast_ratio(own, 0.0) >= contrast_ratio(own, 1.0) else (255, 255, 255)
    return fill, text, worst


def text_edge_share(frames: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> float:
    """Largest share of edge pixels under the box over the frames: high where text is shown."""
    height, width = frames[0].shape[:2]
    x0, y0, x1, y1 = box_pixels(box, width, height)
    shares = []
    for rgb in frames:
        grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        shares.append(float((cv2.Canny(grey, 100, 200) > 0).mean()) if grey.size else 0.0)
    return max(shares) if shares else 0.0


class SegmentFrames:
    """A reader (a `FramesReader`) of up to `most` evenly spaced output frames of the given
    segments of an edit list, within [start_s, end_s) of its timeline, as the renderer would
    draw them (no overlays). Each source is opened once for all reads; `close` closes them."""

    def __init__(self, opener: Opener = open_local, most: int = 12):
        self.opener, self.most = opener, most
        self._sources: dict[str, SourceVideo] = {}

    def __call__(self, edit: EditList, segments: Sequence[Segment], start_s: float, end_s: float) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        for segment in segments:
            lo, hi = max(start_s, segment.start_s), min(end_s, segment.end_s)
            if hi <= lo:
                continue
            times = segment_times(lo, hi, segment.source_start_s + (lo - segment.start_s), edit.fps)
            times = [times[i] for i in np.linspace(0, len(times) - 1, min(self.most, len(times))).round().astype(int)]
            source = self._source(segment.uri)
            frames += [source.upright(f, edit.width, edit.height) for f in source.frames_at(times)]
        return frames

    def _source(self, uri: str) -> SourceVideo:
        if uri not in self._sources:
            self._sources[uri] = SourceVideo(uri, self.opener)
        return self._sources[uri]

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()


def _floors(stats: dict[str, float], gates: NeedleGates, prefix: str) -> str | None:
    for name, floor in (("brightness", gates.min_brightness), ("contrast", gates.min_contrast),
                        ("sharpness", gates.min_sharpness), ("motion", gates.min_motion)):
        if stats[name] < floor:
            return f"{prefix}_{name}"
    return None


def gate_foreign(spec: ProbeSpec, gates: NeedleGates, read: FramesReader) -> GateResult:
    (needle,) = spec.needles
    pieces = spec.edit.segments
    needle_frames = read(spec.edit, [s for s in pieces if s.role == "needle"], needle.span.start_s, needle.span.end_s)
    around = read(spec.edit, [s for s in pieces if s.role == "haystack"], needle.span.start_s - 1.0,
                  needle.span.end_s + 1.0)
    if not needle_frames or not around:
        return GateResult(None, "unreadable")
    needle_stats, haystack_stats = frame_stats(needle_frames), frame_stats(around)
    failed = _floors(needle_stats, gates, "needle") or _floors(haystack_stats, gates, "haystack")
    if failed:
        return GateResult(None, failed)
    quality = {"contrast": round(needle_stats["contrast"], 3),
               **{f"needle_{k}": round(v, 3) for k, v in needle_stats.items()},
               **{f"haystack_{k}": round(v, 3) for k, v in haystack_stats.items()}}
    return GateResult(spec.model_copy(update={"quality": quality}), None)


def gate_rendered(spec: ProbeSpec, gates: NeedleGates, read: FramesReader) -> GateResult:
    """Colour every box for contrast against what it covers; reject boxes over text or unreadable."""
    segments, worst_contrast, most_edges = [], 21.0, 0.0
    for segment in spec.edit.segments:
        if segment.overlay is None:
            segments.append(segment)
            continue
        frames = read(spec.edit, [segment], segment.start_s, segment.end_s)
        if not frames:
            return GateResult(None, "unreadable")
        edges = text_edge_share(frames, segment.overlay.box)
        if edges > gates.max_text_edges:
            return GateResult(None, "text_under_box")
        fill, text, contrast = best_box_colours(frames, segment.overlay.box)
        if contrast < gates.min_box_contrast:
            return GateResult(None, "box_contrast")
        worst_contrast, most_edges = min(worst_contrast, contrast), max(most_edges, edges)
        overlay = segment.overlay.model_copy(update={"bg": fill, "fg": text})
        segments.append(segment.model_copy(update={"overlay": overlay}))
    edit = spec.edit.model_copy(update={"segments": segments})
    quality = {"contrast": round(worst_contrast, 3), "text_edges": round(most_edges, 4)}
    return GateResult(spec.model_copy(update={"edit": edit, "quality": quality}), None)


def gate_probe(spec: ProbeSpec, gates: NeedleGates, read: FramesReader) -> GateResult:
    """The probe with its measured quality, or the gate it failed."""
    try:
        return (gate_foreign if spec.kind == "foreign" else gate_rendered)(spec, gates, read)
    except Exception as exc:  # noqa: BLE001 - a source that cannot be read costs this probe only
        return GateResult(None, f"unreadable: {type(exc).__name__}")


def gate_probes(specs: Sequence[ProbeSpec], gates: NeedleGates, opener: Opener = open_local
                ) -> tuple[list[ProbeSpec], dict[str, str]]:
    """(kept probes, probe_id -> gate) for a video's probes."""
    if not gates.enabled:
        return list(specs), {}
    read = SegmentFrames(opener)
    kept, rejected = [], {}
    try:
        for spec in specs:
            result = gate_probe(spec, gates, read)
            if result.spec is None:
                rejected[spec.probe_id] = result.rejected_by
            else:
                kept.append(result.spec)
    finally:
        read.close()
    return kept, rejected
