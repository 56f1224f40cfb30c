"""Rendered needles: a word or number in a large, high-contrast box centred on the frame.

The layout is computed once per needle from the text and the frame size and stored as
fractions of the frame (box corners, font size), so the same needle can be drawn at any
resolution: by the probe renderer when probes are written, or by a trainer assembling a
probe from its edit list. Drawing uses Pillow's bundled font, so no system font is needed
and the pixels are the same on every machine with the same Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BLACK = (0, 0, 0)
WHITE = (255, 255, 255)

FONT_HEIGHT_FRACTION = 0.2  # font size relative to frame height before fitting the width
MAX_TEXT_WIDTH_FRACTION = 0.8
PADDING_FRACTION = 0.35  # box padding relative to the font size


@dataclass(frozen=True)
class NeedleLayout:
    """Where a needle's box sits and how large its text is, as fractions of the frame."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in [0, 1]
    font_size: float  # font size / frame height


@lru_cache(maxsize=64)
def needle_font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at `size_px` (bitmap default on Pillow without FreeType)."""
    try:
        return ImageFont.load_default(size=max(1, size_px))
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _text_size(text: str, size_px: int) -> tuple[int, int]:
    left, top, right, bottom = needle_font(size_px).getbbox(text)
    return right - left, bottom - top


def needle_layout(text: str, width: int, height: int) -> NeedleLayout:
    """A centred box for `text`, as large as fits: font ~20% of the height, text <= 80% of the width."""
    size_px = max(8, round(FONT_HEIGHT_FRACTION * height))
    text_w, _ = _text_size(text, size_px)
    if text_w > MAX_TEXT_WIDTH_FRACTION * width:
        size_px = max(8, int(size_px * MAX_TEXT_WIDTH_FRACTION * width / text_w))
    text_w, text_h = _text_size(text, size_px)
    pad = PADDING_FRACTION * size_px
    box_w = min(width, text_w + 2 * pad)
    box_h = min(height, max(text_h, size_px) + 2 * pad)
    x0, y0 = (width - box_w) / 2, (height - box_h) / 2
    box = (x0 / width, y0 / height, (x0 + box_w) / width, (y0 + box_h) / height)
    return NeedleLayout(box=tuple(round(v, 6) for v in box), font_size=round(size_px / height, 6))


def box_pixels(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel corners (x0, y0, x1, y1 exclusive) of a fractional box."""
    x0, y0, x1, y1 = box
    return round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)


def draw_needle(
    frame: np.ndarray,
    text: str,
    box: tuple[float, float, float, float],
    font_size: float,
    fg: tuple[int, int, int] = BLACK,
    bg: tuple[int, int, int] = WHITE,
) -> np.ndarray:
    """A copy of the RGB `frame` (H, W, 3, uint8) with `text` drawn centred in a filled box."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame, got {frame.shape} {frame.dtype}")
    height, width = frame.shape[:2]
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box_pixels(box, width, height)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=tuple(bg))
    font = needle_font(max(1, round(font_size * height)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    origin = ((x0 + x1 - left - right) / 2, (y0 + y1 - top - bottom) / 2)
    draw.text(origin, text, fill=tuple(fg), font=font)
    return np.asarray(image)
