"""`llm.backend: vllm-worker`: the RunInference handler that runs a vLLM server on the worker. The
server here is a stand-in (the local test server, started as a process the way `vllm serve` is):
start and health wait, restart after a crash, shutdown, a plain error when it cannot start, and a
build whose annotations went through it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import TINY

from vidcorpus.annotators.vllm_worker import RUNNING, VllmAnnotateHandler, VllmServerError, server_command
from vidcorpus.config import load_config
from vidcorpus.config.llm import AnnotatorConfig, VllmWorkerConfig
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import build

STAND_IN = [sys.executable, str(Path(__file__).parent / "llm_server.py"), "--port", "{port}"]


def worker_llm(command=STAND_IN, **vllm) -> AnnotatorConfig:
    return AnnotatorConfig(model="qwen-vl-stand-in", backoff_base_s=0.01, backoff_max_s=0.05,
                           vllm=VllmWorkerConfig(command=tuple(command), health_poll_s=0.05, startup_timeout_s=30,
                                                 **vllm))


@pytest.fixture
def server():
    handler = VllmAnnotateHandler(worker_llm([*STAND_IN, "--startup-delay", "0.5"]), lambda r, a: None)
    started = handler.load_model()
    yield started
    started.stop()


def test_the_command_gets_model_port_memory_share_and_image_limit():
    config = VllmWorkerConfig(gpu_memory_utilization=0.85, limit_mm_per_prompt={"image": 5})
    assert server_command(config, "Qwen/Qwen2.5-VL-7B-Instruct", 8123) == [
        "vllm", "serve", "Qwen/Qwen2.5-VL-7B-Instruct", "--host", "127.0.0.1", "--port", "8123",
        "--gpu-memory-utilization", "0.85", "--limit-mm-per-prompt", '{"image": 5}']


def test_load_model_returns_once_the_server_is_healthy(server):
    assert server.healthy()  # the stand-in listens only after its half-second start-up
    assert server.base_url() == f"http://127.0.0.1:{server.port}/v1"
    assert server.restarts == 0


def test_a_server_that_died_is_restarted_before_the_next_request(server):
    first = server.pid()
    os.killpg(first, signal.SIGKILL)
    server.process.wait()
    assert not server.healthy()
    server.base_url()
    assert server.pid() != first and server.healthy() and server.restarts == 1


def test_shutdown_stops_the_server(server):
    process = server.process
    server.stop()
    assert process.poll() is not None and not server.healthy()


def test_a_server_that_cannot_start_is_a_plain_error_with_its_output():
    crash = [sys.executable, "-c", "import sys; print('CUDA error: no kernel image'); sys.exit(3)"]
    handler = VllmAnnotateHandler(worker_llm(crash), lambda r, a: None)
    with pytest.raises(VllmServerError, match=r"exited with status 3 .*CUDA error: no kernel image"):
        handler.load_model()


def test_restarts_are_bounded(server):
    limited = server.config.model_copy(update={"max_restarts": 0})
    server.config = limited
    os.killpg(server.pid(), signal.SIGKILL)
    server.process.wait()
    with pytest.raises(VllmServerError, match="max_restarts"):
        server.base_url()


def test_the_handler_annotates_through_the_server_on_this_worker(server, tmp_path):
    seen = []
    def annotate(result, annotator):
        seen.append(annotator)
        return {**result, "usage": {"tokens_in": 1}}

    handler = VllmAnnotateHandler(worker_llm(), annotate)
    results = [{"video": {"video_id": "v1"}, "clips": [{"clip_id": "v1_0000"}]}, {"video": None, "clips": []}]
    assert handler.run_inference(results, server) == [{**results[0], "usage": {"tokens_in": 1}}, results[1]]
    [annotator] = seen  # the failed video is passed through untouched
    assert annotator.clients["caption"].endpoint.base_url == server.base_url()
    assert annotator.clients["caption"].model == "qwen-vl-stand-in"


@pytest.mark.parametrize("shared", [False, True], ids=["per-process", "shared-across-processes"])
def test_a_build_with_the_vllm_worker_backend_annotates_every_clip(tmp_path, monkeypatch, shared):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    video = tmp_path / "in" / "a.mp4"
    write_video(str(video), [Scene(40, 1), Scene(40, 2)], size=(160, 120))
    command = "[" + ", ".join(repr(part) for part in STAND_IN) + "]"
    cfg = load_config(TINY, ["llm.backend=vllm-worker", "llm.model=qwen-vl-stand-in", f"llm.vllm.shared={shared}",
                             f"llm.vllm.command={command}", "llm.vllm.health_poll_s=0.05", "llm.qa_per_video=2",
                             "tasks.enabled=false"])
    summary = build(str(video), str(tmp_path / "out"), cfg)
    assert "annotate" not in summary.skipped_stages
    annotations = pq.read_table(tmp_path / "out" / "data" / "annotations").to_pylist()
    captions = [a for a in annotations if a["kind"] == "caption"]
    assert len(captions) == summary.counts["clips"] == 2
    assert {a["model"] for a in annotations} == {"qwen-vl-stand-in"}
    for started in list(RUNNING):
        started.stop()

