"""The 48×27 RGB frames TransNetV2 reads, made from the decode pass's working frames (no second
decode) and spooled raw to one file per video: 3,888 bytes a frame, read back window by window,
so neither the pass nor the model holds a whole video's frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import cv2
import numpy as np

from vidcorpus import storage

SHOT_FRAME_SHAPE = (27, 48, 3)
SHOT_FRAME_BYTES = int(np.prod(SHOT_FRAME_SHAPE))
SHOT_FRAMES = "shotframes.rgb"


def shot_frame(bgr: np.ndarray) -> np.ndarray:
    """A working-resolution BGR frame as TransNetV2's input: 48×27 RGB, stretched like the
    model's own `ffmpeg -s 48x27` (area-averaged, so the small frame loses no fine detail
    to aliasing)."""
    small = cv2.resize(bgr, (SHOT_FRAME_SHAPE[1], SHOT_FRAME_SHAPE[0]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


class ShotFrameWriter:
    """Appends shot frames to an open binary file, in decode order."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.count = 0

    def add(self, bgr: np.ndarray) -> None:
        self.file.write(shot_frame(bgr).tobytes())
        self.count += 1


@dataclass(frozen=True)
class ShotFrames:
    """Where a video's spooled shot frames are, and how many there are."""
    uri: str
    count: int

    def reader(self) -> "ShotFrameReader":
        return ShotFrameReader(storage.open_read(self.uri), self.count)


class ShotFrameReader:
    """Random access to spooled frames by index range; use as a context manager."""

    def __init__(self, file: BinaryIO, count: int):
        self.file, self.count = file, count

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as uint8 (stop - start, 27, 48, 3)."""
        self.file.seek(start * SHOT_FRAME_BYTES)
        data = self.file.read((stop - start) * SHOT_FRAME_BYTES)
        return np.frombuffer(data, np.uint8).reshape(-1, *SHOT_FRAME_SHAPE)

    def __enter__(self) -> "ShotFrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()
