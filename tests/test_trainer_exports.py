"""Trainer exports load with the consuming library's own loaders, or match its documented schema."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import av
import datasets
import pyarrow.parquet as pq
import pytest
from conftest import tree_digest
from PIL import Image
from pydantic import TypeAdapter

from vidcorpus.cli import main
from vidcorpus.release.trainers import OUTPUT_FILES, export_release
from vidcorpus.tasks.trl_rewards import completion_text, task_reward

trl_data = pytest.importorskip("trl.data_utils")


@pytest.fixture(scope="module")
def exports(task_release, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    folders = {}
    for fmt in OUTPUT_FILES:
        folders[fmt] = root / fmt
        export_release(str(task_release), fmt, str(folders[fmt]), frames_per_video=3, image_size=(48, 64))
    return folders


def table(task_release: Path, name: str) -> list[dict]:
    return pq.read_table(task_release / "data" / name).to_pylist()


def load_json(folder: Path, fmt: str) -> datasets.Dataset:
    return datasets.load_dataset("json", data_files=str(folder / OUTPUT_FILES[fmt]), split="train")


def assert_inside(folder: Path, relpath: str) -> None:
    """A media path resolves to a readable video or picture inside the export folder."""
    path = (folder / relpath).resolve()
    assert path.is_relative_to(folder.resolve()) and path.is_file(), relpath
    if path.suffix == ".mp4":
        with av.open(str(path)) as container:
            assert next(container.decode(video=0)) is not None


def test_llamafactory_sharegpt_video_rows_follow_its_converter_rules(exports, task_release):
    folder = exports["llamafactory"]
    info = json.loads((folder / "dataset_info.json").read_text())["vidcorpus_sft"]
    assert info["formatting"] == "sharegpt" and info["file_name"] == OUTPUT_FILES["llamafactory"]
    assert info["columns"] == {"messages": "messages", "videos": "videos"}
    rows = load_json(folder, "llamafactory")  # LLaMA-Factory reads local json files with datasets
    assert len(rows) == len(table(task_release, "sft"))
    tags = info["tags"]
    for row in rows:
        messages = row["messages"]
        if messages[0][tags["role_tag"]] == tags["system_tag"]:
            messages = messages[1:]
        assert [m["role"] for m in messages] == [tags["user_tag"], tags["assistant_tag"]]
        text = "".join(m["content"] for m in messages)
        assert text.count("<video>") == len(row["videos"]) >= 1 and "<image>" not in text
        for path in row["videos"]:
            assert_inside(folder, path)


def test_llava_rows_have_one_video_and_the_image_token(exports, task_release):
    folder = exports["llava"]
    rows = load_json(folder, "llava")
    sft = {r["sample_id"]: r for r in table(task_release, "sft")}
    assert sorted(rows["id"]) == sorted(sft)
    for row in rows:
        media = sft[row["id"]]["media"]
        if len(media) > 1:  # joined into one video whose length is the parts' total
            assert row["video"].startswith("media/joined/")
            with av.open(str(folder / row["video"])) as container:
                assert len(list(container.decode(video=0))) == sum(round(m["duration_s"] * 10) for m in media)
            assert "Clip 1 is 0-" in row["conversations"][0]["value"]
        assert_inside(folder, row["video"])
        human, gpt = row["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt")
        assert human["value"].startswith("<image>\n") and human["value"].count("<image>") == 1
        assert "<video>" not in human["value"] and gpt["value"]


def test_trl_sft_rows_fill_every_image_placeholder(exports, task_release):
    rows = datasets.load_dataset("parquet", data_files=str(exports["trl-sft"] / "trl_sft.parquet"), split="train")
    assert len(rows) == len(table(task_release, "sft"))
    for row in rows:
        assert trl_data.is_conversational(row)
        messages = trl_data.prepare_multimodal_messages(row["messages"], row["images"])
        filled = [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]
        assert len(filled) == len(row["images"]) >= 3
        assert all(isinstance(image, Image.Image) and image.size == (64, 48) for image in filled)
        assert messages[-1]["role"] == "assistant"


def test_trl_grpo_rows_carry_prompt_images_and_reward_columns(exports, task_release):
    rows = datasets.load_dataset("parquet", data_files=str(exports["trl-grpo"] / "trl_grpo.parquet"), split="train")
    rl = {r["sample_id"]: r for r in table(task_release, "rl")}
    assert sorted(rows["sample_id"]) == sorted(rl)
    for row in rows:
        assert trl_data.is_conversational(row)
        assert [m["role"] for m in row["prompt"]] == ["user"]
        trl_data.prepare_multimodal_messages(row["prompt"], row["images"])
        assert row["ground_truth"] == rl[row["sample_id"]]["ground_truth"]
        assert row["reward_rule"] == rl[row["sample_id"]]["reward_rule"]


def test_trl_reward_adapter_scores_known_answers_one_and_shuffled_answers_lower(exports, task_release):
    rows = datasets.load_dataset("parquet", data_files=str(exports["trl-grpo"] / "trl_grpo.parquet"), split="train")
    answers = {r["sample_id"]: r["answer"] for r in table(task_release, "rl")}
    known = [[{"role": "assistant", "content": answers[s]}] for s in rows["sample_id"]]
    columns = {"ground_truth": rows["ground_truth"], "reward_rule": rows["reward_rule"]}
    extra = {"prompts": rows["prompt"], "completion_ids": [[0]] * len(rows), "trainer_state": None}
    assert task_reward(completions=known, **columns, **extra) == [1.0] * len(rows)
    shuffled = [known[(i + 1) % len(known)] for i in range(len(known))]
    rewards = task_reward(completions=shuffled, **columns, **extra)
    assert sum(rewards) / len(rewards) < 0.75 and all(0.0 <= r <= 1.0 for r in rewards)
    plain = task_reward([answers[s] for s in rows["sample_id"]], **columns)
    assert plain == [1.0] * len(rows)


def test_completion_text_reads_every_completion_shape():
    assert completion_text("B") == "B"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "[1, 2]"}]}]) == "[1, 2]"
    assert completion_text([]) == "" and completion_text(None) == ""


def test_openai_rows_are_valid_chat_messages_with_image_parts_only(exports, task_release):
    from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

    lines = (exports["openai"] / OUTPUT_FILES["openai"]).read_text().splitlines()
    assert len(lines) == len(table(task_release, "sft"))
    adapter = TypeAdapter(list[ChatCompletionMessageParam])
    part_adapter = TypeAdapter(ChatCompletionContentPartParam)  # message content is validated lazily
    for line in lines:
        messages = json.loads(line)["messages"]
        adapter.validate_python(messages, strict=True)
        assert isinstance(messages[-1]["content"], str) and messages[-1]["role"] == "assistant"
        parts = messages[-2]["content"]
        for part in parts:
            part_adapter.validate_python(part, strict=True)
        assert {p["type"] for p in parts} == {"text", "image_url"}
        for part in (p for p in parts if p["type"] == "image_url"):
            header, data = part["image_url"]["url"].split(",", 1)
            assert header == "data:image/jpeg;base64"
            assert Image.open(io.BytesIO(base64.b64decode(data))).size == (64, 48)


def test_exports_are_byte_identical_when_repeated(task_release, exports, tmp_path):
    for fmt in ("llamafactory", "trl-sft"):
        export_release(str(task_release), fmt, str(tmp_path / fmt), frames_per_video=3, image_size=(48, 64))
        assert tree_digest(tmp_path / fmt) == tree_digest(exports[fmt])


def test_a_partial_window_is_re_encoded_from_the_clips_inside_the_release(task_release, tmp_path):
    from vidcorpus.release.files import ReleaseFiles
    from vidcorpus.release.media import ReleaseMedia
    from vidcorpus.release.trainers import ExportMedia

    media = ReleaseMedia(ReleaseFiles(str(task_release)))
    clip = media.files.table("clips").to_pylist()[0]
    window = {"kind": "window", "video_id": clip["video_id"], "uri": "gone.mp4", "duration_s": 1.0,
              "start_s": clip["start_s"] + 0.3, "end_s": clip["start_s"] + 1.3}
    relpath = ExportMedia(tmp_path, media, "file", 3, None, 10.0).video(window)
    assert relpath.startswith("media/windows/")
    with av.open(str(tmp_path / relpath)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 10


def test_export_command(task_release, tmp_path, capsys):
    assert main(["export", str(task_release), "--format", "llava", "--output", str(tmp_path / "x")]) == 0
    assert f"{len(table(task_release, 'sft'))} llava rows" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nowhere"), "--format", "openai"]) == 2
    assert "vidcorpus:" in capsys.readouterr().err

