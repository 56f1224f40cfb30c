"""Which frames the model sees, and how they travel: timestamped JPEGs spread over a clip.

The frames come from the keyframe candidates of the single decode pass (the sharpest frame of
every half second by default), never from a second decode. A clip gets `frames_per_s` of them
(at least `min_frames`), one from each equal slice of the clip, so its first and last seconds
are seen whatever its length. A request carries at most `max_frames`: longer clips are
captioned in consecutive windows.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from vidcorpus.config.llm import ImageDetail


class Frame(NamedTuple):
    t: float
    """Seconds from the start of the video."""
    jpeg: bytes


def frames_for(duration_s: float, frames_per_s: float, min_frames: int) -> int:
    """How many frames a clip of `duration_s` is seen through."""
    return max(min_frames, math.ceil(duration_s * frames_per_s - 1e-9))


def sample_positions(times: Sequence[float], start_s: float, end_s: float, n: int) -> list[int]:
    """Positions in `times` (sorted candidate times) of up to n frames, one nearest the centre of
    each of n equal slices of [start_s, end_s); a candidate is used once, so a clip with fewer
    candidates than slices gives all it has."""
    if not times:
        return []
    width = (end_s - start_s) / n
    chosen: list[int] = []
    for i in range(n):
        centre = start_s + (i + 0.5) * width
        position = min(range(len(times)), key=lambda p: (abs(times[p] - centre), p))
        if position not in chosen:
            chosen.append(position)
    return sorted(chosen)


def spread(frames: Sequence[Frame], limit: int) -> list[Frame]:
    """At most `limit` frames spread evenly over `frames` (in time order), first and last kept."""
    frames = sorted(frames, key=lambda f: f.t)
    if len(frames) <= limit:
        return frames
    if limit == 1:
        return [frames[len(frames) // 2]]
    step = (len(frames) - 1) / (limit - 1)
    return [frames[round(i * step)] for i in range(limit)]


def windows(frames: Sequence[Frame], limit: int) -> list[list[Frame]]:
    """Consecutive windows of at most `limit` frames, as equal in size as they can be."""
    frames = sorted(frames, key=lambda f: f.t)
    count = max(1, math.ceil(len(frames) / limit))
    bounds = [round(i * len(frames) / count) for i in range(count + 1)]
    return [list(frames[a:b]) for a, b in zip(bounds, bounds[1:])]


def frames_in_span(frames: Sequence[Frame], start_s: float, end_s: float, limit: int) -> list[Frame]:
    """The frames inside [start_s, end_s] (at most `limit`), or the one nearest its middle when the
    span is shorter than the gap between frames."""
    inside = [f for f in frames if start_s <= f.t <= end_s]
    if not inside and frames:
        middle = (start_s + end_s) / 2
        inside = [min(frames, key=lambda f: (abs(f.t - middle), f.t))]
    return spread(inside, limit)


def fit_jpeg(jpeg: bytes, max_side: int) -> bytes:
    """The JPEG scaled down so its longest side is at most `max_side` (unchanged when it fits)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None or max(image.shape[:2]) <= max_side:
        return jpeg
    scale = max_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    ok, data = cv2.imencode(".jpg", cv2.resize(image, size, interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return data.tobytes() if ok else jpeg


def jpeg_data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def image_parts(frames: Sequence[Frame], detail: ImageDetail, max_side: int, label: str = "") -> list[dict]:
    """Chat content parts: each frame's time as text, then the image."""
    parts: list[dict] = []
    for frame in frames:
        parts.append({"type": "text", "text": f"{label}{frame.t:.2f} s:"})
        parts.append({"type": "image_url", "image_url": {"url": jpeg_data_url(fit_jpeg(frame.jpeg, max_side)),
                                                         "detail": detail}})
    return parts
