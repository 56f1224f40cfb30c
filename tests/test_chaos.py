"""Chaos: builds SIGKILLed at seeded random moments (scan, segment, annotate, tasks, write, card,
seal), each started again with the same command until it finishes, end byte-identical to an
uninterrupted build, for unnamed releases and for named versions.

The LLM stage runs against the local OpenAI-compatible server. Annotations are not staged, so a
rerun answers from the response cache and, by design, flips each annotation's `cache_hit` flag
(README, Determinism). Every build here therefore shares one response cache, warmed by a first
build, so that documented difference cannot hide or excuse a real one: any other byte that
differs is a resume defect.

`VIDCORPUS_CHAOS_KILLS=N` runs N kills (default 2 in CI: one unnamed, one named);
`VIDCORPUS_CHAOS_SEED` picks the moments.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY, tree_digest
from llm_server import FakeLLMServer

from vidcorpus.media.synth import Scene, write_video
from vidcorpus.publish.validate import validate_release

KILLS = int(os.environ.get("VIDCORPUS_CHAOS_KILLS", "2"))
SEED = int(os.environ.get("VIDCORPUS_CHAOS_SEED", "15"))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "chaos-test"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chaos-videos")
    for i in range(2):
        write_video(str(folder / f"v{i}.mp4"), [Scene(25, 30 * i + j) for j in range(3)], size=(160, 120))
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as s:
        yield s


def command(corpus: Path, out: Path, named: bool, server: FakeLLMServer, cache: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vidcorpus.cli", "build", "--input", str(corpus), "--output", str(out),
           "--config", str(TINY), "--set", "clips.mode=reencode", "--set", f"llm.base_url={server.base_url}",
           "--set", f"llm.cache_dir={cache}", "--set", "llm.qa_per_video=2"]
    return cmd + (["--name", "corpus", "--version", "1.0.0"] if named else [])


def release_of(out: Path, named: bool) -> Path:
    return out / "corpus" / "1.0.0" if named else out


def timed_build(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True, capture_output=True)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def references(corpus, server, tmp_path_factory):
    """(release digest, duration of a build) per mode, all builds sharing one warm cache."""
    root = tmp_path_factory.mktemp("chaos")
    cache = root / "llm-cache"
    timed_build(command(corpus, root / "warm-up", False, server, cache))
    refs = {}
    for named in (False, True):
        out = root / f"reference-{named}"
        seconds = timed_build(command(corpus, out, named, server, cache))
        assert validate_release(str(release_of(out, named))) == []
        refs[named] = (tree_digest(release_of(out, named)), seconds, cache)
    return refs


def test_random_kills_resume_to_identical_releases(corpus, server, references, tmp_path):
    rng = random.Random(SEED)
    outcomes = []
    for trial in range(KILLS):
        named = trial % 2 == 1
        digest, seconds, cache = references[named]
        out = tmp_path / f"trial-{trial}"
        cmd = command(corpus, out, named, server, cache)
        at = rng.uniform(0.05, 1.0) * seconds
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        killed = proc.returncode == -signal.SIGKILL
        if proc.returncode != 0:  # a finished named version is never built again
            subprocess.run(cmd, cwd=REPO, env=ENV, check=True, capture_output=True)
        release = release_of(out, named)
        same = tree_digest(release) == digest and validate_release(str(release)) == []
        outcomes.append((trial, "named" if named else "unnamed", f"{at:.1f}s", killed, same))
    print(f"\nchaos (seed {SEED}): {sum(o[-1] for o in outcomes)} of {len(outcomes)} identical "
          f"({sum(o[3] for o in outcomes)} killed before finishing)")
    for trial, mode, at, killed, same in outcomes:
        print(f"  trial {trial} {mode:<7} kill at {at:>6}  killed={killed} identical={same}")
    assert all(o[-1] for o in outcomes), outcomes
