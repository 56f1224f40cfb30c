"""The annotation engine as a user meets it: budgets, reruns that pay for nothing twice, a dead
endpoint that fails in seconds, a circuit breaker, and a build killed mid-annotation that
resumes to the same bytes."""

from __future__ import annotations

import asyncio
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
from llm_server import FakeLLMServer, Fault
from test_annotators import make_config, make_video

from vidcorpus.annotators import VideoAnnotator
from vidcorpus.annotators.engine import Engine
from vidcorpus.annotators.preflight import LLMUnavailable, check_llm
from vidcorpus.annotators.ratelimit import TokenRate
from vidcorpus.cli import main
from vidcorpus.config import load_config
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import StageFailed, build

PRICES = {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}
"""Absurd prices, so a budget of a dollar runs out after a few requests."""


def annotate(config: AnnotatorConfig, video=None):
    video, clips, jpegs = video or make_video()
    annotator = VideoAnnotator.from_config(config, env={})
    try:
        return annotator.annotate(video, clips, jpegs)
    finally:
        annotator.close()


def sent_bodies(server: FakeLLMServer) -> list[str]:
    return [json.dumps(b, sort_keys=True) for b in server.bodies]


def not_dropped(failures: list[dict]) -> list[dict]:
    """Failures other than the verifiers' drops (an item a check rejected is a row too)."""
    return [f for f in failures if not f["stage"].startswith("annotate.verify.")]


def test_rows_carry_their_cost_and_usage_sums_it_per_prompt(tmp_path: Path):
    with FakeLLMServer() as server:
        annotations, failures, usage = annotate(make_config(server, prices=PRICES))
    assert not_dropped(failures) == []
    costs = [a["cost_usd"] for a in annotations]
    assert all(c == pytest.approx((a["tokens_in"] + a["tokens_out"]) * 1000 / 1e6)
               for c, a in zip(costs, annotations))
    per_prompt = sum(stage["cost_usd"] for stage in usage["by_prompt"].values())
    assert usage["cost_usd"] == pytest.approx(per_prompt) and usage["cost_usd"] > 0
    assert {"caption_diff", "summary_chunk", "qa", "cot", "blind", "visual"} <= set(usage["by_prompt"])
    assert usage["run"]["cost_usd"] == pytest.approx(usage["cost_usd"])  # nothing from the cache
    batch = AnnotatorConfig(prices=PRICES, mode="batch").prices["gpt-4o-mini"]
    assert batch.cost_usd(1000, 0, batch=True) == pytest.approx(0.5)  # the batch discount


def test_a_spent_budget_stops_sending_and_a_larger_one_continues_without_repeating(tmp_path: Path):
    cache = str(tmp_path / "cache")
    with FakeLLMServer() as server:
        _, failures, usage = annotate(make_config(server, prices=PRICES, max_usd=0.5, concurrency=1, cache_dir=cache))
        first = sent_bodies(server)
        assert {f["error_class"] for f in not_dropped(failures)} == {"BudgetExhausted"}
        assert all("budget exhausted" in f["message"] for f in not_dropped(failures))
        assert usage["run"]["budget_exhausted"] > 0
        annotations, failures, _ = annotate(make_config(server, prices=PRICES, max_usd=1e9, cache_dir=cache))
        second = sent_bodies(server)[len(first):]
    assert not_dropped(failures) == [] and annotations
    assert not set(first) & set(second), "a request answered in the first run was sent again"
    with FakeLLMServer() as server:
        annotate(make_config(server, prices=PRICES, cache_dir=str(tmp_path / "fresh")))
        assert server.request_count == len(first) + len(second)


def test_deterministic_failures_cost_nothing_on_a_rerun(tmp_path: Path):
    cache = str(tmp_path / "cache")
    with FakeLLMServer(faults=[Fault("schema_invalid", pattern="Clip 1 of", times=2)]) as server:
        _, failures, usage = annotate(make_config(server, cache_dir=cache))
        made = server.request_count
        _, again, again_usage = annotate(make_config(server, cache_dir=cache))
        assert server.request_count == made  # 0 requests: the invalid reply is cached as a failure
    assert [f["error_class"] for f in not_dropped(failures)] == ["ValidationError"] and again == failures
    assert again_usage["run"]["requests"] == 0 and usage["run"]["repairs"] == 1


def test_transport_failures_are_asked_again_on_a_rerun(tmp_path: Path):
    cache = str(tmp_path / "cache")
    with FakeLLMServer(faults=[Fault("server_error", pattern="Clip 1 of", times=99)]) as server:
        _, failures, _ = annotate(make_config(server, cache_dir=cache, max_retries=1))
        assert [f["error_class"] for f in not_dropped(failures)] == ["InternalServerError"]
        server.faults.clear()
        before = server.request_count
        _, failures, usage = annotate(make_config(server, cache_dir=cache))
        assert not_dropped(failures) == [] and server.request_count > before
    assert usage["run"]["cache_hits"] > 0


def test_the_circuit_breaker_stops_sending_after_consecutive_transport_errors():
    with FakeLLMServer(faults=[Fault("server_error", pattern="", times=10_000)]) as server:
        _, failures, usage = annotate(make_config(server, max_retries=1, concurrency=1, max_consecutive_errors=2))
        assert server.request_count == 4  # two calls, each tried twice; then nothing more is sent
    assert [f["error_class"] for f in failures] == ["InternalServerError"] * 2 + ["CircuitOpen"] * 2
    assert usage["run"]["circuit_open"] == 2


def test_tokens_per_minute_waits_for_the_window():
    now = [0.0]
    rate = TokenRate(100, clock=lambda: now[0])
    assert rate.admit(60) == 0 and rate.admit(30) == 0
    now[0] = 10.0
    assert rate.admit(30) == 50.0  # 120 > 100: wait until the first 60 leave the window at t=60
    now[0] = 60.0
    assert rate.admit(30) == 0
    assert rate.admit(500) > 0  # larger than the limit: passes alone once the window empties
    now[0] = 121.0
    assert rate.admit(500) == 0


def test_the_engine_waits_for_the_token_window_without_holding_its_loop():
    clock, sleeps = [0.0], []
    engine = Engine(4, rate=TokenRate(100, clock=lambda: clock[0]),
                    sleep=lambda s: (sleeps.append(s), clock.__setitem__(0, clock[0] + s)))
    try:
        engine.run(engine.admit(80))
        other = engine.submit(engine.admit(80))  # must wait for the window
        assert engine.run(asyncio.sleep(0, "the loop still runs")) == "the loop still runs"
        other.result(timeout=5)
    finally:
        engine.close()
    assert sleeps == [60.0]


def test_preflight_names_the_url_model_and_what_to_fix():
    with FakeLLMServer(api_key="right", models=["gpt-4o-mini", "other"]) as server:
        config = AnnotatorConfig(base_url=server.base_url)
        check_llm(config, env={"OPENAI_API_KEY": "right"})
        with pytest.raises(LLMUnavailable, match=r"refused the API key \(HTTP 401\).*OPENAI_API_KEY"):
            check_llm(config, env={"OPENAI_API_KEY": "wrong"})
        with pytest.raises(LLMUnavailable, match=r"does not serve that model; it serves: gpt-4o-mini, other"):
            check_llm(config.model_copy(update={"model": "gpt-5-typo"}), env={"OPENAI_API_KEY": "right"})
        url = server.base_url
    with FakeLLMServer() as server:  # no model listing: the first request will tell
        check_llm(AnnotatorConfig(base_url=server.base_url), env={})
    with pytest.raises(LLMUnavailable, match=f"{url}.*cannot be reached.*llm.enabled=false"):
        check_llm(AnnotatorConfig(base_url=url), env={})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine-videos")
    for i in range(4):
        write_video(str(folder / f"v{i}.mp4"), [Scene(20, 7 * i + j) for j in range(3)], size=(96, 64))
    return folder


def test_a_dead_endpoint_fails_the_build_before_it_starts(inputs, tmp_path, capsys):
    with FakeLLMServer() as server:
        url = server.base_url
    code = main(["build", "--input", str(inputs), "--output", str(tmp_path / "out"), "--config", str(TINY),
                 "--set", f"llm.base_url={url}"])
    err = capsys.readouterr().err
    assert code != 0 and "cannot be reached" in err and url in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was scanned: the check came first


def build_config(url: str, *extra: str):
    return load_config(TINY, ["tasks.enabled=false", "llm.qa_per_video=2", "llm.backoff_base_s=0",
                              f"llm.base_url={url}", *extra])


def test_the_build_annotates_many_videos_at_once_under_one_cap(inputs, tmp_path):
    """One video never has more than 4 requests out here (3 captions; 2 CoT and 2 blind checks):
    more in flight means videos overlap, and the cap holds across them."""
    with FakeLLMServer(latency_s=0.2) as server:
        build(str(inputs), str(tmp_path), build_config(server.base_url, "llm.concurrency=10"))
    assert 8 <= server.max_in_flight <= 10


def test_a_tripped_breaker_fails_the_stage_and_a_rerun_completes_it(inputs, tmp_path):
    with FakeLLMServer(faults=[Fault("server_error", pattern="", times=10_000)]) as server:
        with pytest.raises(StageFailed, match="annotate"):
            build(str(inputs), str(tmp_path), build_config(server.base_url, "llm.max_retries=0",
                                                           "llm.max_consecutive_errors=3"),
                  name="c", version="1.0.0")
    manifest = json.loads((tmp_path / "c" / "1.0.0" / "manifest.json").read_text())
    assert "annotate" in manifest["stages_failed"]
    with FakeLLMServer() as server:
        summary = build(str(inputs), str(tmp_path), build_config(server.base_url), name="c", version="1.0.0")
    failures = pq.read_table(tmp_path / "c" / "1.0.0" / "failures").to_pylist()
    assert not_dropped(failures) == [] and summary.counts["annotations"] > 0
    assert "stages_failed" not in json.loads((tmp_path / "c" / "1.0.0" / "manifest.json").read_text())


def test_a_build_killed_mid_annotation_resumes_to_the_same_bytes(inputs, tmp_path):
    def command(out: Path, url: str) -> list[str]:
        return [sys.executable, "-m", "vidcorpus.cli", "build", "--input", str(inputs), "--output", str(out),
                "--config", str(TINY), "--set", "tasks.enabled=false", "--set", "llm.qa_per_video=2",
                "--set", f"llm.base_url={url}", "--set", "llm.concurrency=2"]

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "k"}
    killed = tmp_path / "killed"
    with FakeLLMServer(latency_s=0.1) as server:
        proc = subprocess.Popen(command(killed, server.base_url), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while server.request_count < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 12 <= server.request_count and not (killed / "manifest.json").exists()
        subprocess.run(command(killed, server.base_url), cwd=REPO, env=env, check=True, capture_output=True)
        both_runs = sent_bodies(server)
    with FakeLLMServer(latency_s=0.1) as server:
        clean = tmp_path / "clean"
        subprocess.run(command(clean, server.base_url), cwd=REPO, env=env, check=True, capture_output=True)
        everything = sent_bodies(server)
    assert set(both_runs) == set(everything)  # the same requests as an uninterrupted build
    assert len(both_runs) - len(everything) <= 2, "only those in flight at the kill (llm.concurrency) go twice"
    published = lambda out: {k: v for k, v in tree_digest(out).items() if k != "manifest.json"}
    assert published(killed) == published(clean)
    manifest = lambda out: {k: v for k, v in json.loads((out / "manifest.json").read_text()).items()
                            if k not in ("run", "config", "manifest_digest")}  # the digest covers `run`
    assert manifest(killed) == manifest(clean)
