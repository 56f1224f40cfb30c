"""A build killed with SIGKILL part-way and started again with the same command finishes
without redoing finished videos and ends byte-identical to an uninterrupted build."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, TINY, tree_digest

from vidcorpus.cli import main
from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import build
from vidcorpus.release.layout import ReleaseExists


def command(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vidcorpus.cli", "build", "--input", str(inputs), "--output", str(out),
            "--name", "corpus", "--version", "1.0.0", "--config", str(TINY), "--set", "clips.mode=reencode"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume-videos")
    for i in range(6):
        write_video(str(folder / f"v{i}.mp4"), [Scene(60, 10 * i + j) for j in range(3)], size=(320, 240))
    return folder


def staged_results(out: Path) -> list[Path]:
    return sorted((out / "corpus" / ".work" / "videos").glob("*/result.json"))


def test_killed_build_resumes_to_the_same_bytes(inputs, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(inputs, killed), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not staged_results(killed) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in staged_results(killed)}
    assert 0 < len(done_before) < 6, "the kill should land part-way through the videos"
    assert not (killed / "corpus" / "1.0.0" / "manifest.json").exists()

    subprocess.run(command(inputs, killed), cwd=REPO, env=env, check=True, capture_output=True)
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items()), "finished videos were redone"
    assert len(staged_results(killed)) == 6

    clean = tmp_path / "clean"
    subprocess.run(command(inputs, clean), cwd=REPO, env=env, check=True, capture_output=True)
    release = lambda out: tree_digest(out / "corpus" / "1.0.0")  # noqa: E731
    assert release(killed) == release(clean)
    assert not list((killed / "corpus" / "1.0.0").rglob("*.tmp-*"))


def test_finished_version_is_never_modified(inputs, tmp_path):
    cfg = load_config(TINY)
    build(str(inputs / "v0.mp4"), str(tmp_path), cfg, name="corpus", version="1.0.0")
    before = tree_digest(tmp_path / "corpus" / "1.0.0")
    with pytest.raises(ReleaseExists):
        build(str(inputs), str(tmp_path), cfg, name="corpus", version="1.0.0")
    assert tree_digest(tmp_path / "corpus" / "1.0.0") == before


def test_new_version_reuses_earlier_results(inputs, tmp_path):
    cfg = load_config(TINY)
    build(str(inputs / "v0.mp4"), str(tmp_path), cfg, name="corpus", version="1.0.0")
    first = staged_results(tmp_path)
    stamp = first[0].stat().st_mtime_ns
    summary = build(str(inputs), str(tmp_path), cfg, name="corpus", version="1.1.0")
    assert first[0].stat().st_mtime_ns == stamp      # v0 was not processed again
    assert summary.counts["videos"] == 6 and len(staged_results(tmp_path)) == 6
    with pytest.raises(ValueError, match="semantic"):
        build(str(inputs), str(tmp_path), cfg, name="corpus", version="2")


def test_staged_failures_are_final_unless_retried(inputs, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes((inputs / "v0.mp4").read_bytes())
    data = (inputs / "v1.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])   # truncated: a failure row
    args = ["build", "--input", str(folder), "--output", str(tmp_path), "--name", "corpus", "--config", str(TINY)]
    assert main([*args, "--version", "1.0.0"]) == 0

    def stamps() -> dict[bool, int]:
        """Staged result mtime, keyed by whether the video produced anything."""
        return {bool(json.loads(p.read_text())["video"]): p.stat().st_mtime_ns for p in staged_results(tmp_path)}

    first = stamps()
    assert set(first) == {True, False}
    assert main([*args, "--version", "1.0.1"]) == 0
    assert stamps() == first                                      # the failure was reused
    assert main([*args, "--version", "1.0.2", "--retry-failed"]) == 0
    retried = stamps()
    assert retried[True] == first[True] and retried[False] != first[False]
    failures = pq.read_table(tmp_path / "corpus" / "1.0.2" / "failures").to_pylist()
    assert [(Path(f["uri"]).name, f["stage"]) for f in failures] == [("cut.mp4", "probe")]
