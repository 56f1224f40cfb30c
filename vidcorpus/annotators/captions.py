"""Clip captions from keyframes sent as images, with their timestamps in the text.

Differential mode (after ShareGPT4Video) also asks what changed since the previous clip. It
sends the previous clip's last keyframe as a reference image rather than the previous clip's
caption, so every clip of a video can still be captioned in parallel.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from vidcorpus.annotators.client import LLMRequest, NonEmptyStr, OutputModel
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.config.llm import ImageDetail


class ClipCaption(OutputModel):
    schema_name = "clip_caption"

    caption: NonEmptyStr
    changes_since_previous: str | None
    """What changed since the previous clip; null outside differential mode."""


def jpeg_data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def image_part(jpeg: bytes, detail: ImageDetail) -> dict:
    return {"type": "image_url", "image_url": {"url": jpeg_data_url(jpeg), "detail": detail}}


def pick_keyframes(keyframes: Sequence[dict], jpegs: Sequence[bytes], limit: int) -> list[tuple[float, bytes]]:
    """At most `limit` (timestamp, jpeg) pairs spread evenly over the clip, in time order."""
    pairs = sorted(zip((k["timestamp_s"] for k in keyframes), jpegs), key=lambda p: p[0])
    if len(pairs) <= limit:
        return pairs
    if limit == 1:
        return [pairs[len(pairs) // 2]]
    step = (len(pairs) - 1) / (limit - 1)
    return [pairs[round(i * step)] for i in range(limit)]


def caption_request(
    video: dict,
    clip: dict,
    jpegs: Sequence[bytes],
    *,
    previous: tuple[float, bytes] | None = None,
    detail: ImageDetail = "low",
    max_keyframes: int = 4,
    prompt_versions: dict[str, int] | None = None,
) -> LLMRequest[ClipCaption]:
    """One clip's caption request; `previous` = (timestamp, jpeg) of the prior clip's last keyframe."""
    frames = pick_keyframes(clip["keyframes"], jpegs, max_keyframes)
    if not frames:
        raise ValueError(f"clip {clip['clip_id']} has no keyframe images")
    prompt_id = "caption_diff" if previous is not None else "caption"
    prompt = load_prompt(prompt_id, (prompt_versions or {}).get(prompt_id))
    values = dict(
        clip_index=clip["index"],
        video_duration=_s(video["duration_s"]),
        start_s=_s(clip["start_s"]),
        end_s=_s(clip["end_s"]),
        timestamps=", ".join(f"{_s(t)} s" for t, _ in frames),
    )
    content: list[dict] = []
    if previous is not None:
        values["previous_s"] = _s(previous[0])
        content += [{"type": "text", "text": f"Previous clip, {_s(previous[0])} s:"}, image_part(previous[1], detail)]
    for t, jpeg in frames:
        content += [{"type": "text", "text": f"{_s(t)} s:"}, image_part(jpeg, detail)]
    system, user = prompt.render(**values)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "text", "text": user}, *content]},
    ]
    return LLMRequest(prompt, messages, ClipCaption, item_id=clip["clip_id"])


def caption_requests(
    video: dict,
    clips: Sequence[dict],
    keyframe_jpegs: dict[str, Sequence[bytes]],
    *,
    differential: bool = True,
    detail: ImageDetail = "low",
    max_keyframes: int = 4,
    prompt_versions: dict[str, int] | None = None,
) -> tuple[list[LLMRequest[ClipCaption]], list[dict]]:
    """Requests for every clip that has keyframe images, and the clips that have none."""
    requests, without_images = [], []
    previous: tuple[float, bytes] | None = None
    for clip in sorted(clips, key=lambda c: c["index"]):
        jpegs = keyframe_jpegs.get(clip["clip_id"]) or []
        frames = pick_keyframes(clip.get("keyframes") or [], jpegs, len(jpegs))
        if not frames:
            without_images.append(clip)
            previous = None
            continue
        requests.append(caption_request(
            video, clip, jpegs,
            previous=previous if differential else None,
            detail=detail, max_keyframes=max_keyframes, prompt_versions=prompt_versions,
        ))
        previous = frames[-1]
    return requests, without_images


def _s(seconds: float) -> str:
    return f"{seconds:.2f}"
