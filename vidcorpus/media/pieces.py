"""Clips encoded during the decode pass, so no frame of a re-encoded clip is decoded twice.

The pass does not know the clips yet (scenes are planned from all cuts at its end), but a clip
starts and ends on cuts. So the pass splits the video into pieces at each cut the detector
reports on the frame being decoded, and encodes every piece that will be re-encoded (all of them
when the picture cannot be stream-copied or `clips.mode` is `reencode`; else those that do not
start on a key frame, and, once a cut fell off a key frame, those that do: such a source does
not key its cuts, so their ends will be off key frames too) with its own `ClipEncoder`, straight
to a staged MP4. A clip that is exactly one piece takes its file; any other clip (a cut reported
late, a short scene merged, a long one split, a piece that started on a key frame before any
cut fell off one but ends off one) is read again (`clips.reencode_clips`), from the key frame at
its start; pieces no clip took are deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

import av

from vidcorpus import storage
from vidcorpus.config.build import ClipMp4Config
from vidcorpus.media.clips import ClipEncoder, can_copy
from vidcorpus.media.decode import Geometry


@dataclass(frozen=True)
class Piece:
    """Frames [start, end) encoded as the MP4 at `uri`."""
    start: int
    end: int
    uri: str


class PieceEncoders:
    """Fed every frame of the pass; encodes the pieces that need it and stages their MP4s
    under `directory`. One piece is open at a time, so memory holds one encoder."""

    def __init__(self, directory: str, codec: str, fps: float, cfg: ClipMp4Config):
        self.directory, self.codec, self.fps, self.cfg = directory, codec, fps, cfg
        self.pieces: list[Piece] = []
        self._open: tuple[int, storage.local_file, ClipEncoder] | None = None
        self._cuts_off_key_frames = False

    def push(self, index: int, t: float, key: bool, frame: av.VideoFrame, geometry: Geometry,
             cut: bool) -> None:
        """Frame `index` of the pass; `cut`: a new scene starts on it."""
        if cut or index == 0:
            self._close(index)
            self._cuts_off_key_frames |= cut and not key
            if self._needs_encoding(key, geometry):
                uri = storage.join(self.directory, f"piece-{index:08d}.mp4")
                target = storage.local_file(uri)
                self._open = index, target, ClipEncoder(target.path, geometry, self.fps, t, self.cfg)
        if self._open is not None:
            self._open[2].add(t, frame)

    def finish(self, frames: int) -> list[Piece]:
        """Close the last piece (the video has `frames` frames); the staged pieces."""
        self._close(frames)
        return self.pieces

    def abort(self) -> None:
        """Drop the open piece (the pass failed)."""
        if self._open is not None:
            self._open[1].discard()
            self._open = None

    def _needs_encoding(self, key: bool, geometry: Geometry) -> bool:
        return (self.cfg.mode == "reencode" or self._cuts_off_key_frames
                or not can_copy(self.codec, geometry, key, True))

    def _close(self, end: int) -> None:
        if self._open is None:
            return
        start, target, encoder = self._open
        self._open = None
        encoder.close()
        target.commit()
        self.pieces.append(Piece(start, end, target.uri))
