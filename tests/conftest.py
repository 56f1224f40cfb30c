"""Shared fixtures: every test video is generated here with PyAV; none is checked in."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_audio_only, write_video
from vidcorpus.pipelines.build import build

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
TASK_OVERRIDES = ["tasks.ordering.k=3", "tasks.niah.probes_per_video=1", "tasks.niah.grid.haystack_s=[4.0]",
                  "shards.max_samples=2", "tasks.rl_overlap=true"]  # both task tables full, for readers


@pytest.fixture(scope="session")
def tiny_config():
    return load_config(TINY)


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """One folder holding every kind of input the build must handle, good and bad."""
    root = tmp_path_factory.mktemp("videos")
    paths = {name: root / name for name in (
        "cuts.mp4", "fade.mp4", "vfr.mkv", "rotated.mp4", "audio_only.mp4", "empty.mp4",
        "truncated.mkv", "notavideo.mp4")}
    write_video(str(paths["cuts.mp4"]), [Scene(30, 1), Scene(25, 2), Scene(35, 3)], size=(160, 120))
    (root / "cuts.en.srt").write_text("1\n00:00:00,200 --> 00:00:01,000\nthe first scene\n\n"
                                      "2\n00:00:01,400 --> 00:00:02,000\nnow the second\n")
    write_video(str(paths["fade.mp4"]), [Scene(30, 4, fade_out=10), Scene(30, 5, fade_in=10)], size=(160, 120))
    write_video(str(paths["vfr.mkv"]), [Scene(30, 6), Scene(30, 7)], fps=30, vfr=True, size=(160, 120))
    write_video(str(paths["rotated.mp4"]), [Scene(20, 8), Scene(20, 9)], size=(160, 96), rotation=90)
    write_audio_only(str(paths["audio_only.mp4"]))
    paths["empty.mp4"].write_bytes(b"")
    full = tmp_path_factory.mktemp("source") / "full.mkv"
    write_video(str(full), [Scene(40, 10), Scene(40, 11)], size=(160, 120), codec="libx264")
    data = full.read_bytes()
    paths["truncated.mkv"].write_bytes(data[: len(data) // 2])
    full.unlink()
    paths["notavideo.mp4"].write_text("plain text pretending to be a video\n")
    return paths


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every release file (the work directory excluded)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".work" not in p.parts}


def realvideos_dir() -> str | None:
    path = os.environ.get("VIDCORPUS_REALVIDEOS")
    return path if path and os.path.isdir(path) else None


@pytest.fixture(scope="session")
def task_release(tmp_path_factory) -> Path:
    """A release with 4 clip shards, 4 sft and 4 rl shards (NIAH probes and ordering windows), whose
    source videos are deleted once built: a reader may open nothing outside the release."""
    root = tmp_path_factory.mktemp("task-release")
    write_video(str(root / "videos" / "a.mp4"), [Scene(40, 1), Scene(40, 2), Scene(40, 1), Scene(40, 3)],
                size=(160, 120))
    write_video(str(root / "videos" / "b.mp4"), [Scene(50, 4), Scene(50, 5), Scene(50, 6)], size=(160, 120))
    build(str(root / "videos"), str(root / "rel"), load_config(TINY, TASK_OVERRIDES))
    shutil.rmtree(root / "videos")
    return root / "rel"


@pytest.fixture(scope="session", autouse=True)
def no_real_llm_endpoint():
    """Tests never reach a real LLM endpoint with a developer's key: the OpenAI variables of the
    shell are set aside; tests that want an endpoint start the local server and set their own."""
    mp = pytest.MonkeyPatch()
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        mp.delenv(name, raising=False)
    yield
    mp.undo()
