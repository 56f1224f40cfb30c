"""The captioner on GPU workers (`llm.backend: vllm-worker`): a RunInference handler whose model is
a `vllm serve` process on the worker itself, spoken to over localhost by the annotation engine.

Beam's own vLLM handlers send plain-string chat messages, so they cannot carry images. Here the
handler only owns the server (start, wait until healthy, restart if it died, stop) and hands its
local URL to the one annotation engine, which sends the same multimodal requests, with the same
retries, cache and validation, as it does to any OpenAI-compatible endpoint. The server is shared
by the worker's SDK processes (Beam's cross-process model sharing), so one machine loads the
weights once.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

from apache_beam.ml.inference.base import ModelHandler

from vidcorpus.config.llm import AnnotatorConfig, VllmWorkerConfig

log = logging.getLogger(__name__)


class VllmServerError(RuntimeError):
    """The local vLLM server did not come up (or came up too often)."""


RUNNING: "weakref.WeakSet[VllmServer]" = weakref.WeakSet()
"""Servers started by this process; stopped when it exits, so none outlives its worker."""


@atexit.register
def stop_all() -> None:
    for server in list(RUNNING):
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(config: VllmWorkerConfig, model: str, port: int) -> list[str]:
    """`config.command` with its {model}, {port}, {gpu_memory_utilization} and
    {limit_mm_per_prompt} placeholders filled."""
    values = {"model": model, "port": str(port), "gpu_memory_utilization": f"{config.gpu_memory_utilization:g}",
              "limit_mm_per_prompt": json.dumps(config.limit_mm_per_prompt, sort_keys=True)}
    return [part.format(**values) for part in config.command]


class VllmServer:
    """One `vllm serve` (or stand-in) process on this machine. `base_url()` is the only thing a
    caller needs: it restarts the process first if it has died."""

    def __init__(self, config: VllmWorkerConfig, model: str):
        self.config, self.model = config, model
        self.port = config.port or free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._output: deque[str] = deque(maxlen=40)
        self._lock = threading.Lock()

    def start(self) -> None:
        command = server_command(self.config, self.model, self.port)
        log.info("starting the local LLM server: %s", " ".join(command))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        RUNNING.add(self)
        threading.Thread(target=self._keep_output, args=(self.process,), daemon=True).start()
        self._wait_until_healthy()

    def _keep_output(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            text = line.decode(errors="replace").rstrip()
            self._output.append(text)
            log.debug("vllm: %s", text)

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VllmServerError(
                    f"the local LLM server ({self.config.command[0]} ...) exited with status "
                    f"{self.process.returncode} before it became healthy; its last output: "
                    f"{' | '.join(list(self._output)[-5:]) or '(none)'}")
            if self.healthy():
                return
            time.sleep(self.config.health_poll_s)
        self.stop()
        raise VllmServerError(f"the local LLM server was not healthy within {self.config.startup_timeout_s:g} s "
                              "(llm.vllm.startup_timeout_s); large models take minutes to load")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.config.health_path}", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def ensure_running(self) -> None:
        """Restart the server if its process has exited (at most `max_restarts` times)."""
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                return
            if self.process is not None:
                if self.restarts >= self.config.max_restarts:
                    raise VllmServerError(f"the local LLM server died {self.restarts + 1} times "
                                          "(llm.vllm.max_restarts); not starting it again")
                self.restarts += 1
                log.warning("the local LLM server exited (status %s); restart %d", self.process.returncode,
                            self.restarts)
            self.start()

    def base_url(self) -> str:
        self.ensure_running()
        return f"http://127.0.0.1:{self.port}/v1"

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Terminate the server and its children (it runs in its own session), then wait."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=self.config.stop_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()

    def __del__(self) -> None:
        self.stop()


class VllmAnnotateHandler(ModelHandler[dict, dict, VllmServer]):
    """RunInference handler: a segmented video's result in, the same result with its annotations
    out. The model is the local server (shared across the worker's processes); the requests go
    from this process through the annotation engine to the server's URL. `annotate(result,
    annotator)` adds one video's annotations (the pipeline's own step, passed in so this layer
    does not import the pipelines)."""

    def __init__(self, llm: AnnotatorConfig, annotate: Callable[[dict, Any], None]):
        super().__init__(min_batch_size=1, max_batch_size=1)
        self._llm, self._annotate = llm, annotate
        self._annotators: dict[str, Any] = {}

    def load_model(self) -> VllmServer:
        server = VllmServer(self._llm.vllm, self._llm.model)
        server.start()
        return server

    def share_model_across_processes(self) -> bool:
        return self._llm.vllm.shared

    def annotator_for(self, base_url: str):
        """One annotation engine per server URL in this process (its clients keep connections)."""
        if base_url not in self._annotators:
            from vidcorpus.annotators.video import VideoAnnotator
            self._annotators[base_url] = VideoAnnotator.from_config(
                self._llm.model_copy(update={"base_url": base_url}), env={})
        return self._annotators[base_url]

    def run_inference(self, batch: Sequence[dict], model: VllmServer,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[dict]:
        annotator = self.annotator_for(model.base_url())
        return [self._annotate(result, annotator) if result["video"] and result["clips"] else result
                for result in batch]

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(result.get("clips") or ()) for result in batch)

    def get_metrics_namespace(self) -> str:
        return "vidcorpus_vllm_worker"

    def get_resource_hints(self) -> dict:
        return {"accelerator": self._llm.vllm.accelerator} if self._llm.vllm.accelerator else {}
