"""A build under attack: disk full, transient errors, two builds at once, renamed inputs, a kill
between the manifest and the card, tampering after the build, Ctrl-C and SIGTERM."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, TINY, tree_digest

from vidcorpus import storage
from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines import build as build_module
from vidcorpus.pipelines.build import build
from vidcorpus.pipelines.lock import LOCK, BuildLock, BuildLocked
from vidcorpus.publish.validate import validate_release
from vidcorpus.release.layout import ReleaseExists

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("safety-videos")
    for i in range(3):
        write_video(str(folder / f"v{i}.mp4"), [Scene(20, 20 * i + j) for j in range(2)], size=(160, 120))
    return folder


@pytest.fixture(scope="module")
def cfg():
    return load_config(TINY)


@pytest.fixture(scope="module")
def clean(inputs, cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("safety-clean") / "release"
    build(str(inputs), str(out), cfg)
    return out


def fail_spool_writes(monkeypatch, error: int, video: str | None = None) -> None:
    """Writes of keyframe spools (of one video, or all) raise OSError(error)."""
    real = storage.open_write.__enter__

    def enter(self):
        if self.uri.endswith("candidates.bin") and (video is None or video in self.uri):
            raise OSError(error, os.strerror(error), self.uri)
        return real(self)
    monkeypatch.setattr(storage.open_write, "__enter__", enter)


def test_disk_full_stops_the_build_with_one_message_and_the_rerun_is_identical(inputs, cfg, clean, tmp_path,
                                                                                 monkeypatch):
    out = tmp_path / "release"
    fail_spool_writes(monkeypatch, errno.ENOSPC)
    with pytest.raises(storage.DiskFull, match=r"no space left on the device holding .*\(\d+ MiB free\)"):
        build(str(inputs), str(out), cfg)
    assert not list((out / ".work" / "videos").glob("*/result.json")), "a full disk was staged as a failure"
    monkeypatch.undo()
    build(str(inputs), str(out), cfg)
    assert tree_digest(out) == tree_digest(clean)


def test_transient_errors_are_never_final(inputs, cfg, clean, tmp_path, monkeypatch):
    out = tmp_path / "release"
    fail_spool_writes(monkeypatch, errno.EIO)
    build(str(inputs), str(out), cfg)
    failures = pq.read_table(out / "failures").to_pylist()
    assert len(failures) == 3 and {f["error_class"] for f in failures} == {"OSError"}
    assert not list((out / ".work" / "videos").glob("*/result.json"))
    monkeypatch.undo()
    build(str(inputs), str(out), cfg)  # no --retry-failed needed
    assert tree_digest(out) == tree_digest(clean)


def test_a_second_build_into_the_same_output_refuses_at_once(inputs, clean, tmp_path):
    out = tmp_path / "release"
    shutil.copytree(clean, out)
    before = tree_digest(out)
    with BuildLock(str(out / ".work")):  # a build of this process is running
        second = subprocess.run([sys.executable, "-m", "vidcorpus.cli", "build", "--input", str(inputs),
                                 "--output", str(out), "--config", str(TINY)], cwd=REPO, env=ENV,
                                capture_output=True, text=True, check=False)
    assert second.returncode == 2
    assert f"another build is writing into this output (pid {os.getpid()} on {os.uname().nodename}" in second.stderr
    assert "Traceback" not in second.stderr
    assert tree_digest(out) == before and validate_release(str(out)) == []
    assert not (out / ".work" / LOCK).exists()


def test_the_lock_of_a_dead_build_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    work = tmp_path / ".work"
    work.mkdir()
    (work / LOCK).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "then"}))
    with BuildLock(str(work)):
        assert json.loads((work / LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(BuildLocked, match=f"pid {os.getpid()}"):
            BuildLock(str(work)).__enter__()
    assert "taking over the lock of a build that is no longer running" in caplog.text
    assert not (work / LOCK).exists()


def test_a_lock_whose_pid_was_reused_by_another_process_is_taken_over(tmp_path):
    work = tmp_path / ".work"
    work.mkdir()
    alive_but_other = {"pid": os.getpid(), "host": os.uname().nodename, "started": "then", "process_start": 1}
    (work / LOCK).write_text(json.dumps(alive_but_other))
    with BuildLock(str(work)):
        assert json.loads((work / LOCK).read_text())["process_start"] != 1


def test_a_renamed_input_is_recorded_under_its_new_name(inputs, cfg, tmp_path):
    folder = tmp_path / "videos"
    shutil.copytree(inputs, folder)
    out = tmp_path / "release"
    build(str(folder), str(out), cfg)
    (folder / "v0.mp4").rename(folder / "renamed.mp4")
    build(str(folder), str(out), cfg)
    uris = sorted(v["uri"].rsplit("/", 1)[-1] for v in pq.read_table(out / "data" / "videos").to_pylist())
    assert uris == ["renamed.mp4", "v1.mp4", "v2.mp4"]


def test_a_named_version_killed_before_its_card_is_finished_by_a_rerun(inputs, cfg, tmp_path, monkeypatch):
    def killed(release):
        raise SystemExit(137)  # as if SIGKILLed right after the pipeline wrote manifest.json
    monkeypatch.setattr(build_module, "write_card", killed)
    with pytest.raises(SystemExit):
        build(str(inputs), str(tmp_path / "out"), cfg, name="c", version="1.0.0")
    release = tmp_path / "out" / "c" / "1.0.0"
    assert (release / "manifest.json").exists() and not (release / "README.md").exists()
    assert "unfinished release" in validate_release(str(release))[0]
    monkeypatch.undo()
    build(str(inputs), str(tmp_path / "out"), cfg, name="c", version="1.0.0")
    assert validate_release(str(release)) == []
    with pytest.raises(ReleaseExists):
        build(str(inputs), str(tmp_path / "out"), cfg, name="c", version="1.0.0")
    clean = tmp_path / "clean"
    build(str(inputs), str(clean), cfg, name="c", version="1.0.0")
    assert tree_digest(release) == tree_digest(clean / "c" / "1.0.0")


def edit_manifest(release: Path, change) -> None:
    manifest = json.loads((release / "manifest.json").read_text())
    change(manifest)
    (release / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


TAMPERING = {
    "stray top-level file": lambda r: (r / "notes.txt").write_text("hello"),
    "new empty folder": lambda r: (r / "extra").mkdir(),
    "new folder with a file": lambda r: (r / "extra").mkdir() or (r / "extra" / "x.bin").write_bytes(b"x"),
    "edited card": lambda r: (r / "README.md").write_text((r / "README.md").read_text() + "\nlicense: mine\n"),
    "edited report": lambda r: (r / "report.html").write_text("<html></html>"),
    "deleted card": lambda r: (r / "README.md").unlink(),
    "edited config": lambda r: edit_manifest(r, lambda m: m["config"]["scenes"].update(detector="adaptive")),
    "edited name": lambda r: edit_manifest(r, lambda m: m.update(name="someone-else")),
    "edited usage": lambda r: edit_manifest(r, lambda m: m.update(usage={"tokens_in": 1})),
    "edited counts": lambda r: edit_manifest(r, lambda m: m["counts"].update(shards=99)),
}


@pytest.mark.parametrize("attack", sorted(TAMPERING))
def test_validate_sees_any_change_to_a_release(clean, tmp_path, attack):
    assert validate_release(str(clean)) == []
    copy = tmp_path / "copy"
    shutil.copytree(clean, copy, ignore=shutil.ignore_patterns(".work"))
    TAMPERING[attack](copy)
    assert validate_release(str(copy)), f"{attack} went unnoticed"


@pytest.mark.parametrize("sig, code, words", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                              (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_and_sigterm_end_with_one_line(inputs, tmp_path, sig, code, words):
    out = tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-m", "vidcorpus.cli", "build", "--input", str(inputs), "--output",
                             str(out), "--config", str(TINY), "--set", "clips.mode=reencode"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not list((out / ".work" / "videos").glob("*/result.json")) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the build finished before the signal")
    assert proc.returncode == code
    lines = [line for line in stderr.splitlines() if not line.startswith("WARNING")]
    assert lines == [(f"vidcorpus: {words}; finished videos are kept in the work directory; run the same "
                      "command again to resume (a half-written release is never left looking finished)")]
    assert not (out / ".work" / LOCK).exists()
