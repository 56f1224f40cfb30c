"""Inputs a hostile or careless user can put in the input folder: each becomes a failures row with
a plain reason, and none hangs, aborts or vanishes from the build."""

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, TINY

from vidcorpus import storage
from vidcorpus.config.build import ProbeConfig
from vidcorpus.media.errors import ImplausibleTiming
from vidcorpus.media.probe import open_container, probe
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.discover import discover, list_file_entries
from vidcorpus.schemas.records import failure_row

NON_UTF8 = b"caf\xe9-latin1.mp4"


def mp4_box(data: bytes, path: list[bytes], start: int = 0, end: int | None = None) -> int:
    """Offset of the box at `path` (e.g. moov/trak/mdia/mdhd) in an MP4's bytes."""
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        if kind == path[0]:
            return start if len(path) == 1 else mp4_box(data, path[1:], start + 8, start + size)
        start += size
    raise KeyError(path[0])


def with_zero_timescale(data: bytes) -> bytes:
    """The video track's `mdhd` time scale set to 0."""
    out = bytearray(data)
    mdhd = mp4_box(data, [b"moov", b"trak", b"mdia", b"mdhd"])
    offset = mdhd + 12 + (16 if data[mdhd + 8] == 1 else 8)
    assert struct.unpack(">I", data[offset:offset + 4])[0] > 0
    out[offset:offset + 4] = bytes(4)
    return bytes(out)


def with_zero_deltas(data: bytes) -> bytes:
    """Every `stts` sample delta set to 0 (all frames at one time)."""
    out = bytearray(data)
    stts = mp4_box(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"])
    entries = struct.unpack(">I", data[stts + 12:stts + 16])[0]
    for k in range(entries):
        out[stts + 20 + 8 * k:stts + 24 + 8 * k] = bytes(4)
    return bytes(out)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A folder with one good video (50 frames, 2 s) and one of every hostile kind."""
    root = tmp_path_factory.mktemp("hostile")
    good = root / "good.mp4"
    write_video(str(good), [Scene(25, 1), Scene(25, 2)], size=(160, 120))
    data = good.read_bytes()
    (root / "zero_timescale.mp4").write_bytes(with_zero_timescale(data))
    (root / "zero_deltas.mp4").write_bytes(with_zero_deltas(data))
    os.mkfifo(root / "fifo.mp4")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    (root / "link-to-good.mp4").symlink_to(good)
    write_video(os.fsdecode(os.fsencode(str(root)) + b"/" + NON_UTF8), [Scene(20, 3)], size=(160, 120))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "socket.mp4"))
    yield root
    sock.close()


def build_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vidcorpus.cli", "build", *args, "--config", str(TINY)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def hostile_release(hostile, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-out") / "release"
    done = build_cli(["--input", str(hostile), "--output", str(out)])  # a hang would hit the timeout
    assert done.returncode == 0, done.stderr
    return out


def failures_by_name(release: Path) -> dict[str, dict]:
    rows = pq.read_table(release / "failures").to_pylist()
    return {row["uri"].rsplit("/", 1)[-1]: row for row in rows}


def test_every_hostile_input_is_a_plain_failures_row(hostile_release):
    failures = failures_by_name(hostile_release)
    assert "not a regular file (it is a FIFO)" == failures["fifo.mp4"]["message"]
    assert "not a regular file (it is a socket)" == failures["socket.mp4"]["message"]
    assert failures["dangling.mp4"]["message"].startswith("dangling symlink: its target")
    assert failures["loop.mp4"]["message"] == "symlink loop: the link never reaches a file"
    assert failures["zero_timescale.mp4"]["error_class"] == "ImplausibleTiming"
    assert failures["zero_deltas.mp4"]["error_class"] == "ImplausibleTiming"
    # the symlink to the good video has the same content: one copy is kept, the other is a duplicate
    assert failures["link-to-good.mp4"]["error_class"] == "DuplicateContent"
    assert all("pydantic" not in row["message"] and "\n" not in row["message"] for row in failures.values())


def test_a_name_that_is_not_utf8_is_kept_losslessly(hostile, hostile_release):
    videos = pq.read_table(hostile_release / "data" / "videos").to_pylist()
    uris = {v["uri"] for v in videos}
    encoded = [u for u in uris if u.startswith("file://")]
    assert len(encoded) == 1 and encoded[0].endswith("/caf%E9-latin1.mp4")
    assert os.fsencode(storage.local_path(encoded[0])) == os.fsencode(str(hostile)) + b"/" + NON_UTF8
    assert {u.rsplit("/", 1)[-1] for u in uris} == {"good.mp4", "caf%E9-latin1.mp4"}


def test_zero_timescale_and_zero_deltas_are_never_a_bogus_duration(hostile):
    good = hostile / "good.mp4"
    with open_container(str(good), good.stat().st_size) as c:
        assert probe(c, good.stat().st_size, ProbeConfig())["header_duration_s"] == pytest.approx(2.0)
    for name, says in (("zero_timescale.mp4", "time scale"), ("zero_deltas.mp4", "frame durations")):
        path = hostile / name
        with open_container(str(path), path.stat().st_size) as c, pytest.raises(ImplausibleTiming, match=says):
            probe(c, path.stat().st_size, ProbeConfig())


def test_list_files_take_comments_file_uris_and_report_missing_entries(hostile, tmp_path, tiny_config):
    listing = tmp_path / "inputs.txt"
    listing.write_bytes(b"  # an indented comment\n\n"
                        + f"file://{hostile / 'good.mp4'}\n".encode()
                        + f"{tmp_path / 'missing.mp4'}\n".encode()
                        + b"\t#another\n")
    uris, skipped = discover(str(listing), tiny_config.input)
    assert uris == sorted([f"file://{hostile / 'good.mp4'}", str(tmp_path / "missing.mp4")]) and not skipped
    assert list_file_entries(b"/videos/" + NON_UTF8 + b"\n") == ["file:///videos/caf%E9-latin1.mp4"]
    out = tmp_path / "release"
    done = build_cli(["--input", str(listing), "--output", str(out)])
    assert done.returncode == 0, done.stderr
    failures = failures_by_name(out)
    assert list(failures) == ["missing.mp4"]
    assert failures["missing.mp4"]["message"] == "no such file (listed, but not there)"
    assert [v["uri"] for v in pq.read_table(out / "data" / "videos").to_pylist()] == [f"file://{hostile / 'good.mp4'}"]


def test_failure_messages_are_plain_sentences():
    from pydantic import BaseModel, ValidationError

    class Fps(BaseModel):
        fps: float

    with pytest.raises(ValidationError) as raised:
        Fps(fps="fast")
    row = failure_row("x.mp4", "validate", raised.value)
    assert row["message"] == "fps: Input should be a valid number, unable to parse string as a number"
    assert "errors.pydantic.dev" not in row["message"]


def test_a_stuck_decoder_becomes_a_timeout(monkeypatch):
    import threading
    import time

    from vidcorpus.media.decode import read_ahead
    from vidcorpus.media.errors import WatchdogTimeout

    release = threading.Event()

    def stuck():
        yield 1
        release.wait(30)  # a read that never returns (until the test ends)
        yield 2

    got = []
    with pytest.raises(WatchdogTimeout):
        for item in read_ahead(stuck(), 2, 1, deadline=time.monotonic() + 0.5):
            got.append(item)
    release.set()
    assert got == [1]
