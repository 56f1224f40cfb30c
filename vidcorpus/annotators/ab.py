"""Two versions of a caption prompt on the same clips, for a side-by-side comparison.

`compare_caption_prompts` runs the caption round of `VideoAnnotator` twice over one video's
clips and frames, once with each version of `prompt_id` pinned, and returns one row per clip
with both captions and what each cost. Everything else (frames, windows, the previous caption
in differential mode) is the same in both runs, so the prompt is the only difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vidcorpus.annotators.frames import Frame
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.video import VideoAnnotator

CAPTION_PROMPTS = ("caption", "caption_diff", "caption_merge")


def compare_caption_prompts(
    annotator: VideoAnnotator, video: dict, clips: Sequence[dict], frames: Mapping[str, Sequence[Frame]],
    prompt_id: str, versions: tuple[int, int],
) -> list[dict[str, Any]]:
    """One row per clip: `clip_id`, span, and for each version its caption (or error) and tokens."""
    if prompt_id not in CAPTION_PROMPTS:
        raise ValueError(f"A/B compares caption prompts ({', '.join(CAPTION_PROMPTS)}), not {prompt_id!r}")
    for version in versions:
        load_prompt(prompt_id, version)  # an unknown version fails before any call
    runs = []
    for version in versions:
        pinned = {**annotator.config.prompt_versions, prompt_id: version}
        config = annotator.config.model_copy(update={"prompt_versions": pinned, "qa_per_video": 0})
        captions_only = {**annotator.clients, "summary": None}
        rows, failures, _ = VideoAnnotator(config, captions_only).annotate(video, clips, frames)
        runs.append(({r["clip_id"]: r for r in rows if r["kind"] == "caption"},
                     {f["item_id"]: f for f in failures}))
    table = []
    for clip in sorted(clips, key=lambda c: c["index"]):
        row: dict[str, Any] = {"clip_id": clip["clip_id"], "start_s": clip["start_s"], "end_s": clip["end_s"]}
        for label, version, (captions, failures) in zip("ab", versions, runs):
            caption = captions.get(clip["clip_id"])
            failure = failures.get(clip["clip_id"])
            row[label] = {
                "version": version,
                "caption": json.loads(caption["payload"])["caption"] if caption else None,
                "error": f"{failure['error_class']}: {failure['message']}" if failure and not caption else None,
                "tokens_in": caption["tokens_in"] if caption else 0,
                "tokens_out": caption["tokens_out"] if caption else 0,
            }
        table.append(row)
    return table
