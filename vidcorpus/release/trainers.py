"""Write a release's task rows as one trainer's dataset, with the media it points at.

`export_release(release, "llamafactory", out)` converts every row of the format's source table
(`vidcorpus.tasks.trainers`) and writes, under `out` (by default `<release>/exports/<format>/`):

| format | file | media |
|---|---|---|
| llamafactory | `vidcorpus_sft.json` + `dataset_info.json` | `media/` MP4s (and JPEGs for frames-mode rows); `media_dir` = `out` |
| llava | `llava_video.json` | `media/` MP4s (several media joined into one); `video_folder` = `out` |
| trl-sft, trl-grpo | `trl_sft.parquet`, `trl_grpo.parquet` | JPEG frames inside the Parquet (`datasets.Image`) |
| openai | `openai_chat.jsonl` | JPEG frames as `data:` URLs |

No path leaves the export folder: probes are copied from `probes/`, a window that is exactly one
clip is that clip's MP4 taken out of its shard, and any other window is re-encoded from the clip
MP4s covering it (`vidcorpus.release.media`) at `window_fps`. Files are written in sample order
with fixed encoder settings, so the same release gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vidcorpus import storage
from vidcorpus.release.files import ReleaseFiles
from vidcorpus.release.media import ReleaseMedia, media_recipes
from vidcorpus.tasks.export import frame_times
from vidcorpus.tasks.render import encode_mp4
from vidcorpus.tasks.trainers import CONVERTERS, FORMATS, SOURCE_TABLE, dataset_info

OUTPUT_FILES = {"llamafactory": "vidcorpus_sft.json", "llava": "llava_video.json", "trl-sft": "trl_sft.parquet",
                "trl-grpo": "trl_grpo.parquet", "openai": "openai_chat.jsonl"}
LLAMAFACTORY_NAME = "vidcorpus_sft"
JPEG_QUALITY = 90
CACHED_MEDIA = 4


@dataclass
class ExportSummary:
    format: str
    path: str
    rows: int = 0
    media_files: int = 0

    def describe(self) -> str:
        return f"{self.path}: {self.rows} {self.format} rows, {self.media_files} media files"


def media_key(entry: dict[str, Any]) -> str:
    """A file-name-safe id of one media entry: the probe id, or the window's video and span in ms."""
    if entry["kind"] == "probe":
        return entry["probe_id"]
    return f"{entry['video_id']}_{round(entry['start_s'] * 1000)}-{round(entry['end_s'] * 1000)}"


def jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class ExportMedia:
    """The `MediaFiles` of one export: MP4s and frame JPEGs under `out/media/`, or image values."""

    def __init__(self, out: Path, media: ReleaseMedia, image_form: str, frames_per_video: int,
                 image_size: tuple[int, int] | None, window_fps: float):
        self.out, self.media = out, media
        self.image_form = image_form  # file | bytes | data_url
        self.frames_per_video, self.image_size, self.window_fps = frames_per_video, image_size, window_fps
        self.written: set[str] = set()
        self._frames: OrderedDict[str, dict[float, np.ndarray]] = OrderedDict()  # the last few media's frames

    def frame_times(self, entry: dict[str, Any]) -> list[float]:
        return frame_times(entry["duration_s"], self.frames_per_video)

    def video(self, entry: dict[str, Any]) -> str:
        clip = self._whole_clip(entry)
        relpath = f"media/clips/{clip['clip_id']}.mp4" if clip else f"media/{entry['kind']}s/{media_key(entry)}.mp4"
        if relpath not in self.written:
            self._write(relpath, self._mp4(entry, clip))
        return relpath

    def joined_video(self, entries: list[dict[str, Any]]) -> tuple[str, list[tuple[float, float]]]:
        """One MP4 showing the entries one after another at `window_fps`, and each one's span in it."""
        chunks, spans, start = [], [], 0.0
        for entry in entries:
            frames = self._window_frames(entry, size=chunks[0].shape[1:3] if chunks else None)
            chunks.append(frames)
            spans.append((start, start + len(frames) / self.window_fps))
            start = spans[-1][1]
        digest = hashlib.sha256("|".join(media_key(e) for e in entries).encode()).hexdigest()[:16]
        relpath = f"media/joined/{entries[0]['video_id']}_{digest}.mp4"
        if relpath not in self.written:
            self._write(relpath, self._encode(np.concatenate(chunks)))
        return relpath, spans

    def _window_frames(self, entry: dict[str, Any], size: tuple[int, int] | None = None) -> np.ndarray:
        fps = self.window_fps
        times = [k / fps for k in range(max(1, round(entry["duration_s"] * fps)))]
        return self.media.frames(entry, times, size)[0]

    def _encode(self, frames: np.ndarray) -> bytes:
        height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        return encode_mp4(frames[:, :height, :width], self.window_fps, width, height)

    def _whole_clip(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The clip a window shows in full, if it is exactly one clip."""
        if entry["kind"] != "window":
            return None
        return next((c for c in self.media.clips_of(entry["video_id"])
                     if abs(c["start_s"] - entry["start_s"]) < 1e-3 and abs(c["end_s"] - entry["end_s"]) < 1e-3
                     and c["shard"]), None)

    def _mp4(self, entry: dict[str, Any], clip: dict[str, Any] | None) -> bytes:
        pieces = self.media.pieces(entry)
        if entry["kind"] == "probe" or clip is not None:
            return self.media.video_bytes(pieces[0])
        return self._encode(self._window_frames(entry))

    def image(self, entry: dict[str, Any], time_s: float) -> Any:
        key, time_s = media_key(entry), round(time_s, 6)
        data = jpeg(self._frame(entry, key, time_s))
        if self.image_form == "bytes":
            return {"bytes": data, "path": None}
        if self.image_form == "data_url":
            return "data:image/jpeg;base64," + base64.b64encode(data).decode()
        relpath = f"media/frames/{key}_{round(time_s * 1000):08d}.jpg"
        if relpath not in self.written:
            self._write(relpath, data)
        return relpath

    def _frame(self, entry: dict[str, Any], key: str, time_s: float) -> np.ndarray:
        """One frame, read with the media's other export frames in one pass (consecutive rows
        often show the same media); only the last `CACHED_MEDIA` media stay in memory."""
        cached = self._frames.setdefault(key, {})
        self._frames.move_to_end(key)
        if time_s not in cached:
            wanted = sorted({round(t, 6) for t in self.frame_times(entry)} - set(cached) | {time_s})
            frames, _ = self.media.frames(entry, wanted, self.image_size)
            cached.update(zip(wanted, frames))
        while len(self._frames) > CACHED_MEDIA:
            self._frames.popitem(last=False)
        return cached[time_s]

    def _write(self, relpath: str, data: bytes) -> None:
        path = self.out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.written.add(relpath)


IMAGE_FORMS = {"llamafactory": "file", "llava": "file", "trl-sft": "bytes", "trl-grpo": "bytes", "openai": "data_url"}


def export_release(release: str, fmt: str, out: str | None = None, *, split: str | None = None,
                   frames_per_video: int = 8, image_size: tuple[int, int] | None = None,
                   window_fps: float = 10.0) -> ExportSummary:
    """Write the release's `sft` (or `rl`, for trl-grpo) rows as `fmt` under `out`; see the module docstring."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    files = ReleaseFiles(release)
    table = files.table(SOURCE_TABLE[fmt])
    if table is None:
        raise ValueError(f"{release} has no {SOURCE_TABLE[fmt]} table: build it with tasks enabled")
    if out is None and not storage.is_local(release):
        raise ValueError(f"{release} is remote: give the export folder (--output)")
    folder = Path(out or Path(storage.local_path(release)) / "exports" / fmt)
    media = ExportMedia(folder, ReleaseMedia(files), IMAGE_FORMS[fmt], frames_per_video, image_size, window_fps)
    summary = ExportSummary(fmt, str(folder / OUTPUT_FILES[fmt]))
    rows = []
    for row in table.to_pylist():
        if split is not None and row["split"] != split:
            continue
        rows.append(CONVERTERS[fmt]({**row, "media": media_recipes(row)}, media))
    write_rows(fmt, rows, folder)
    summary.rows, summary.media_files = len(rows), len(media.written)
    return summary


def write_rows(fmt: str, rows: list[dict[str, Any]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / OUTPUT_FILES[fmt]
    if fmt in ("trl-sft", "trl-grpo"):
        write_image_parquet(rows, path)
    elif fmt == "openai":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
        if fmt == "llamafactory":
            info = dataset_info(LLAMAFACTORY_NAME, path.name, rows)
            (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))


def write_image_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as Parquet whose `images` column is a list of `datasets.Image` (bytes embedded), so
    `datasets.load_dataset("parquet", ...)` gives PIL images, as TRL's vision trainers expect."""
    import datasets

    data = datasets.Dataset.from_list(rows)
    data = data.cast_column("images", datasets.List(datasets.Image()))
    data.to_parquet(str(path))
