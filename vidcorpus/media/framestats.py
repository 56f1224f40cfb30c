"""Cheap per-frame statistics on working-resolution frames: brightness, sharpness, motion."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameStats:
    brightness: float   # mean luma, 0-255
    sharpness: float    # variance of the Laplacian: low for blurred or flat frames
    motion: float       # mean absolute luma change from the previous frame, 0-255


class FrameStatistics:
    """Computes FrameStats frame after frame, keeping only the previous frame's luma."""

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None

    def __call__(self, gray: np.ndarray) -> FrameStats:
        brightness = cv2.mean(gray)[0]
        same = self._prev is not None and self._prev.shape == gray.shape
        motion = mean_abs_difference(gray, self._prev) if same else 0.0
        self._prev = gray
        return FrameStats(brightness, laplacian_variance(gray), motion)


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two same-shaped 8-bit images (OpenCV's L1 norm: an exact integer sum)."""
    return cv2.norm(a, b, cv2.NORM_L1) / a.size


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the Laplacian, from its sum and sum of squares (both exact in float64 for
    16-bit values): the same figure as cv2.meanStdDev, at half the cost."""
    lap = cv2.Laplacian(gray, cv2.CV_16S)
    n = lap.size
    mean = cv2.sumElems(lap)[0] / n
    return cv2.norm(lap, cv2.NORM_L2SQR) / n - mean * mean
