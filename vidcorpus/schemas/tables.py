"""Arrow schemas of every table vidcorpus writes: the one place where columns are defined.

Parquet files, WebDataset JSON and validation all read these, so a column exists in exactly
one place. Non-nullable fields are required on every record.
"""

from __future__ import annotations

import pyarrow as pa

KEYFRAME = pa.struct([
    pa.field("timestamp_s", pa.float64(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("brightness", pa.float32(), nullable=False),
    pa.field("sharpness", pa.float32(), nullable=False),
    pa.field("mode", pa.string(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),
])

TRANSITION = pa.struct([      # a gradual transition (fade, dissolve) found by TransNetV2
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("start_frame", pa.int64(), nullable=False),
    pa.field("end_frame", pa.int64(), nullable=False),
])

AUDIO_STREAM = pa.struct([    # one audio stream of the source, as probed
    pa.field("index", pa.int32(), nullable=False),   # among the audio streams (`audio.stream`)
    pa.field("codec", pa.string(), nullable=False),
    pa.field("channels", pa.int32(), nullable=False),
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("language", pa.string()),              # the stream's language tag (ISO 639), when set
])

VIDEOS = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("license", pa.string()),
    pa.field("size_bytes", pa.int64(), nullable=False),
    pa.field("container", pa.string(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("fps", pa.float64(), nullable=False),
    pa.field("is_vfr", pa.bool_(), nullable=False),
    pa.field("num_frames", pa.int64(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("display_width", pa.int32(), nullable=False),
    pa.field("display_height", pa.int32(), nullable=False),
    pa.field("rotation", pa.int32(), nullable=False),
    pa.field("sample_aspect_ratio", pa.float64(), nullable=False),
    pa.field("video_codec", pa.string(), nullable=False),
    pa.field("pix_fmt", pa.string()),
    pa.field("bit_rate", pa.int64()),
    pa.field("start_time_s", pa.float64(), nullable=False),
    pa.field("has_audio", pa.bool_(), nullable=False),
    pa.field("audio_codec", pa.string()),
    pa.field("audio_sample_rate", pa.int32()),
    pa.field("audio_channels", pa.int32()),
    pa.field("audio_streams", pa.list_(AUDIO_STREAM), nullable=False),
    pa.field("num_clips", pa.int32(), nullable=False),
    pa.field("dup_of", pa.string()),  # the video whose footage this one repeats (near-duplicate group)
    pa.field("overlap_s", pa.float64()),  # seconds of this video found in the group
    pa.field("transitions", pa.list_(TRANSITION), nullable=False),
])

CLIPS = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("index", pa.int32(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("start_frame", pa.int64(), nullable=False),
    pa.field("end_frame", pa.int64(), nullable=False),
    pa.field("detector", pa.string(), nullable=False),
    pa.field("mean_motion", pa.float32(), nullable=False),
    pa.field("mean_brightness", pa.float32(), nullable=False),
    pa.field("mean_sharpness", pa.float32(), nullable=False),
    pa.field("keyframes", pa.list_(pa.field("item", KEYFRAME, nullable=False)), nullable=False),
    pa.field("clip_mode", pa.string(), nullable=False),
    pa.field("audio_mode", pa.string()),   # copy | reencode; null: the MP4 has no sound
    pa.field("speech", pa.string()),       # the video's transcript lines inside the clip, null when none
    pa.field("shard", pa.string()),
    # CLIP stage (null without it)
    pa.field("embedding", pa.list_(pa.float32())),
    pa.field("dup_group", pa.string()),
    pa.field("is_transition", pa.bool_()),
])

TRANSCRIPTS = pa.schema([     # timed speech and subtitle lines, seconds from the first video frame
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),     # embedded | sidecar | asr
    pa.field("language", pa.string()),                   # the track's or file's language tag, when known
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
])

FRAMES = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("timestamp_s", pa.float64(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("brightness", pa.float32(), nullable=False),
    pa.field("sharpness", pa.float32(), nullable=False),
    pa.field("embedding", pa.list_(pa.float32()), nullable=False),
    pa.field("scores", pa.list_(pa.float32()), nullable=False),   # cosine to each of clip.queries
])

ANNOTATIONS = pa.schema([
    pa.field("ann_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("clip_id", pa.string()),
    pa.field("payload", pa.string(), nullable=False),                 # JSON
    pa.field("evidence_spans", pa.list_(pa.list_(pa.float64())), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("prompt_version", pa.int32(), nullable=False),
    pa.field("request_hash", pa.string(), nullable=False),
    pa.field("tokens_in", pa.int64(), nullable=False),
    pa.field("tokens_out", pa.int64(), nullable=False),
    pa.field("cost_usd", pa.float64(), nullable=False),             # at llm.prices; run-independent
    pa.field("verdicts", pa.string(), nullable=False),                # JSON
])

# Task tables (`sft`, `rl`). Both share the task identity columns, a `media` list and an
# `answer_key`. A media entry is what a model may be told: an opaque media_id, the uri (a source
# video for kind "window", the written MP4 relative to the release root for kind "probe", none in
# reference mode), the duration and a label. The `answer_key` JSON holds what the answer could be
# read from and what only a loader needs: per media id the window's source start_s/end_s, clip
# and probe ids and the probe's edit_list; the task's source ids; its meta (needles, source
# spans). Loaders read it to assemble media and never forward it. Message content parts point at
# media by media_index; image parts also carry timestamp_s, the frame's time inside that media.

MEDIA = pa.struct([
    pa.field("kind", pa.string(), nullable=False),
    pa.field("media_id", pa.string(), nullable=False),  # opaque: a hash, no time order
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string()),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("label", pa.string()),
])

CONTENT_PART = pa.struct([
    pa.field("type", pa.string(), nullable=False),  # text | video | image
    pa.field("text", pa.string()),
    pa.field("media_index", pa.int32()),
    pa.field("timestamp_s", pa.float64()),
])

MESSAGE = pa.struct([
    pa.field("role", pa.string(), nullable=False),  # system | user | assistant
    pa.field("content", pa.list_(CONTENT_PART), nullable=False),
])

TURN = pa.struct([
    pa.field("from", pa.string(), nullable=False),  # system | human | gpt
    pa.field("value", pa.string(), nullable=False),
])

FRAME_REF = pa.struct([
    pa.field("media_index", pa.int32(), nullable=False),
    pa.field("timestamp_s", pa.float64(), nullable=False),
])

_IDENTITY = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("task_id", pa.string(), nullable=False),
    pa.field("family", pa.string(), nullable=False),  # niah | order | grounding | speech
    pa.field("kind", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("video_ids", pa.list_(pa.string()), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("media", pa.list_(MEDIA), nullable=False),
    pa.field("answer_key", pa.string(), nullable=False),  # JSON, never shown to a model: media recipes, source ids, meta
]

SFT_SCHEMA = pa.schema(_IDENTITY + [
    pa.field("media_as", pa.string(), nullable=False),  # video | frames
    pa.field("messages", pa.list_(MESSAGE), nullable=False),  # OpenAI-style chat
    pa.field("conversations", pa.list_(TURN), nullable=False),  # LLaVA-style, <video>/<image> tokens
    pa.field("frames", pa.list_(FRAME_REF), nullable=False),  # one per <image> token, in order
], metadata={"table": "sft"})

RL_SCHEMA = pa.schema(_IDENTITY + [
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("prompt_messages", pa.list_(MESSAGE), nullable=False),
    pa.field("answer", pa.string(), nullable=False),  # reference answer, reward 1 by construction
    pa.field("ground_truth", pa.string(), nullable=False),  # JSON, as `rewards.score` reads it
    pa.field("reward_rule", pa.string(), nullable=False),
    pa.field("options", pa.list_(pa.string()), nullable=False),
    pa.field("difficulty", pa.float64(), nullable=False),
], metadata={"table": "rl"})

FAILURES = pa.schema([
    pa.field("uri", pa.string(), nullable=False),
    pa.field("video_id", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("error_class", pa.string(), nullable=False),
    pa.field("message", pa.string(), nullable=False),
    pa.field("attempts", pa.int32(), nullable=False),
])

TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS, "clips": CLIPS, "transcripts": TRANSCRIPTS, "frames": FRAMES, "annotations": ANNOTATIONS,
    "sft": SFT_SCHEMA, "rl": RL_SCHEMA, "failures": FAILURES,
}
"""Every table of a release, in the order the dataset card lists them."""

EMBEDDING_TABLES = ("clips", "frames")


def with_embedding_dim(schema: pa.Schema, dim: int) -> pa.Schema:
    """The schema as written: `embedding` columns become fixed-size lists of the model's width."""
    i = schema.get_field_index("embedding")
    if i < 0:
        return schema
    field = schema.field(i)
    return schema.set(i, pa.field("embedding", pa.list_(pa.float32(), dim), nullable=field.nullable))
