"""Task rows in the formats trainers load as they are: LLaMA-Factory, LLaVA-Video, TRL, OpenAI.

Each converter takes one published row (`sft`, or `rl` for GRPO) and a `MediaFiles` that turns
the row's media into what the format points at (file paths relative to the export folder,
image bytes or data URLs), and returns the trainer's row:

- ``llamafactory``: ShareGPT with OpenAI-style tags, as LLaMA-Factory's `mllm_video_demo`:
  ``messages`` (system, user, assistant; one ``<video>`` per entry of ``videos`` and one
  ``<image>`` per entry of ``images``), described by a `dataset_info.json` entry
  (`dataset_info`); media paths resolve against `media_dir` = the export folder;
- ``llava``: LLaVA-Video / LLaVA-NeXT training JSON: ``id``, ``video`` (one path, relative to
  `video_folder` = the export folder) and ``conversations`` (from/value) whose first human turn
  holds the ``<image>`` token LLaVA-NeXT's `train.py` expands into the video's frames. LLaVA-NeXT
  reads one video per sample, so a row with several media gets them joined into one video, and
  its prompt says where each labelled media lies in it ("Clip 2 is 1.6-3.2 s");
- ``trl-sft``: TRL's conversational vision format: ``messages`` with ``{"type": "image"}``
  placeholders and an ``images`` column, one image per placeholder;
- ``trl-grpo``: TRL's prompt-only format: ``prompt`` (conversational, with image placeholders),
  ``images``, and the columns the reward adapter reads (`ground_truth`, `reward_rule`), see
  `vidcorpus.tasks.trl_rewards`;
- ``openai``: chat fine-tuning JSONL: system and assistant contents as text, the user's as
  ``text`` and ``image_url`` parts (OpenAI takes no video part).

Frame formats (TRL, OpenAI) show each video as `MediaFiles.frame_times` frames, each after a
``[12.5s]`` stamp on the video's own clock, so time questions stay answerable.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from vidcorpus.tasks.records import format_seconds

FORMATS = ("llamafactory", "llava", "trl-sft", "trl-grpo", "openai")
SOURCE_TABLE = {"llamafactory": "sft", "llava": "sft", "trl-sft": "sft", "trl-grpo": "rl", "openai": "sft"}


class MediaFiles(Protocol):
    """What a converter needs from the export: media turned into files, images and frame times."""

    def video(self, media: dict[str, Any]) -> str: ...

    def image(self, media: dict[str, Any], time_s: float) -> Any: ...

    def frame_times(self, media: dict[str, Any]) -> list[float]: ...

    def joined_video(self, media: Sequence[dict[str, Any]]) -> tuple[str, list[tuple[float, float]]]: ...


def conversation(row: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]], str | None]:
    """(system text, the user's content parts, the assistant's answer) of an sft or rl row."""
    messages = row["messages"] if "messages" in row else row["prompt_messages"]
    system = next((_text(m["content"]) for m in messages if m["role"] == "system"), None)
    user = next(m["content"] for m in messages if m["role"] == "user")
    answer = next((_text(m["content"]) for m in messages if m["role"] == "assistant"), None)
    return system, user, answer


def _text(parts: Sequence[dict[str, Any]]) -> str:
    return "\n".join(p["text"] for p in parts if p["type"] == "text")


def as_frames(row: dict[str, Any], parts: Sequence[dict[str, Any]], media: MediaFiles) -> list[dict[str, Any]]:
    """User parts with every video part replaced by stamped image parts at the export's frame times."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] != "video":
            out.append(part)
            continue
        entry = row["media"][part["media_index"]]
        for time in media.frame_times(entry):
            out += [{"type": "text", "text": f"[{format_seconds(time)}s]"},
                    {"type": "image", "media_index": part["media_index"], "timestamp_s": time}]
    return out


def _tokens(row: dict[str, Any], parts: Sequence[dict[str, Any]], media: MediaFiles,
            video_token: str, image_token: str) -> tuple[str, list[str], list[Any]]:
    """(text with media tokens, video paths, images) of the user's parts, in order."""
    lines, videos, images = [], [], []
    for part in parts:
        entry = row["media"][part["media_index"]] if part.get("media_index") is not None else None
        if part["type"] == "text":
            lines.append(part["text"])
        elif part["type"] == "video":
            lines.append(video_token)
            videos.append(media.video(entry))
        else:
            lines.append(image_token)
            images.append(media.image(entry, part["timestamp_s"]))
    return "\n".join(lines), videos, images


def to_llamafactory(row: dict[str, Any], media: MediaFiles) -> dict[str, Any]:
    system, parts, answer = conversation(row)
    text, videos, images = _tokens(row, parts, media, "<video>", "<image>")
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    out: dict[str, Any] = {"id": row["sample_id"], "messages": messages}
    if videos:
        out["videos"] = videos
    if images:
        out["images"] = images
    return out


def dataset_info(name: str, file_name: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The `dataset_info.json` entry that registers an llamafactory export under `name`."""
    columns = {"messages": "messages"}
    for column in ("videos", "images"):
        if any(column in row for row in rows):
            columns[column] = column
    return {name: {"file_name": file_name, "formatting": "sharegpt", "columns": columns,
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant", "system_tag": "system"}}}


def to_llava(row: dict[str, Any], media: MediaFiles) -> dict[str, Any]:
    system, parts, answer = conversation(row)
    labels = {m["label"] + ":" for m in row["media"] if m.get("label")}
    text = _text([p for p in parts if p["type"] == "text" and not _is_stamp(p["text"]) and p["text"] not in labels])
    if len(row["media"]) == 1:
        video = media.video(row["media"][0])
    else:
        video, spans = media.joined_video(row["media"])
        where = [f"{m.get('label') or f'Part {i + 1}'} is {format_seconds(a)}-{format_seconds(b)} s"
                 for i, (m, (a, b)) in enumerate(zip(row["media"], spans))]
        text = f"The video joins {len(spans)} parts one after another: {'; '.join(where)}.\n{text}"
    out = {"id": row["sample_id"], "video": video,
           "conversations": [{"from": "human", "value": f"<image>\n{text}"}, {"from": "gpt", "value": answer}]}
    if system:
        out["system"] = system
    return out


def _is_stamp(text: str) -> bool:
    """A frame stamp such as `[12.5s]` (frames-mode rows; LLaVA is shown the whole video)."""
    return text.startswith("[") and text.endswith("s]")


def _trl_messages(row: dict[str, Any], media: MediaFiles) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                      list[Any]]:
    """(system+user messages, the assistant's message, images) in TRL's structured-content form."""
    system, parts, answer = conversation(row)
    content, images = [], []
    for part in as_frames(row, parts, media):
        if part["type"] == "text":
            content.append({"type": "text", "text": part["text"]})
        else:
            content.append({"type": "image", "text": None})
            images.append(media.image(row["media"][part["media_index"]], part["timestamp_s"]))
    prompt = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []) + [
        {"role": "user", "content": content}]
    return prompt, [{"role": "assistant", "content": [{"type": "text", "text": answer}]}], images


def to_trl_sft(row: dict[str, Any], media: MediaFiles) -> dict[str, Any]:
    prompt, reply, images = _trl_messages(row, media)
    return {"sample_id": row["sample_id"], "messages": prompt + reply, "images": images}


def to_trl_grpo(row: dict[str, Any], media: MediaFiles) -> dict[str, Any]:
    prompt, _, images = _trl_messages(row, media)
    return {"sample_id": row["sample_id"], "prompt": prompt, "images": images, "kind": row["kind"],
            "ground_truth": row["ground_truth"], "reward_rule": row["reward_rule"]}


def to_openai(row: dict[str, Any], media: MediaFiles) -> dict[str, Any]:
    system, parts, answer = conversation(row)
    content = []
    for part in as_frames(row, parts, media):
        if part["type"] == "text":
            content.append({"type": "text", "text": part["text"]})
        else:
            url = media.image(row["media"][part["media_index"]], part["timestamp_s"])
            content.append({"type": "image_url", "image_url": {"url": url, "detail": "low"}})
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


CONVERTERS = {"llamafactory": to_llamafactory, "llava": to_llava, "trl-sft": to_trl_sft,
              "trl-grpo": to_trl_grpo, "openai": to_openai}
