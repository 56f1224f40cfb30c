"""Near-duplicate footage grouped before anything is split: a global step over one small entry
per video (its dHash signature from the decode pass), then each video's result takes its group's
split and is flagged (`dup_of`, `overlap_s` on the video row). Hash-of-bytes splitting alone
would put a re-encode or an excerpt of a test video into train."""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from vidcorpus.ids import split_of
from vidcorpus.scoring.footage import group_footage


def footage_entry(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """What grouping needs of a video: id, duration and signature (none for failed videos)."""
    video = result.get("video")
    if video and result.get("signature"):
        yield {"video_id": video["video_id"], "duration_s": video["duration_s"], "signature": result["signature"]}


def footage_groups(entries: list[dict[str, Any]], fractions: dict[str, float]) -> dict[str, dict[str, Any]]:
    """video_id -> {split, dup_of, overlap_s} for every video in a near-duplicate group."""
    return {v: {"split": split_of(m.group, fractions), "dup_of": m.dup_of, "overlap_s": m.overlap_s}
            for v, m in group_footage(entries).items()}


def apply_footage_group(result: dict[str, Any], groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The result with its group's split on the video and every clip, and the duplicate flags."""
    video = result.get("video")
    group = groups.get(video["video_id"]) if video else None
    if group is None:
        return result
    result = {**result, "video": {**video, **group}}
    result["clips"] = [{**clip, "split": group["split"]} for clip in result["clips"]]
    return result


class GroupFootage(beam.PTransform):
    """Results in, results out: near-duplicate videos share one split and are flagged."""

    def __init__(self, fractions: dict[str, float], once):
        super().__init__()
        self.fractions, self.once = fractions, once

    def expand(self, results):
        entries = results | "FootageEntries" >> beam.FlatMap(footage_entry)
        groups = self.once(results.pipeline, "FootageGroups", entries, footage_groups, self.fractions)
        return results | "AssignGroups" >> beam.Map(apply_footage_group, beam.pvalue.AsSingleton(groups))
