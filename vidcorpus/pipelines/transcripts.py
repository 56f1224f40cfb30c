"""A scanned video's subtitle lines (embedded streams and sidecar files) as `transcripts` rows.
A track or file that cannot be read costs one failures row (stage `subtitles`), not the video."""

from __future__ import annotations

import logging
from typing import Any

from vidcorpus.media.subtitles import embedded_lines, sidecar_lines
from vidcorpus.pipelines.scan import Scanned, open_source
from vidcorpus.schemas.records import failure_row

log = logging.getLogger(__name__)


def subtitle_rows(scanned: Scanned) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(transcripts rows, failures rows) of the video's embedded and sidecar subtitles."""
    item, scan = scanned.item, scanned.scan
    origin_s = float(scan.origin_pts * scan.time_base)
    readers = (lambda: embedded_lines(open_source(item.uri), origin_s),
               lambda: sidecar_lines(item.uri, scanned.header["container_start_s"] - origin_s))
    rows, failures = [], []
    for read in readers:
        try:
            rows += [line.row(item.video_id) for line in read()]
        except Exception as exc:  # noqa: BLE001 - unreadable subtitles cost a row, not the video
            log.warning("%s: subtitles: %s: %s", item.uri, type(exc).__name__, exc)
            failures.append(failure_row(item.uri, "subtitles", exc, item.video_id))
    return rows, failures
