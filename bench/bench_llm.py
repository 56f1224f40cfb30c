"""LLM benchmark against the local OpenAI-compatible test server.

0. Requests in flight through the real pipeline: N videos of 3 clips each are scanned once
   (no LLM), then annotated by the build at each `llm.concurrency` against the server (its own
   process, 0.3 s latency, fresh cache). The server measures the average in flight as busy
   seconds / wall seconds between the first request and the last response; target >= 0.8 x c.
   Videos per run: max(24, c), so while some videos wait on a one-request round (summary, QA)
   others have requests to send. The table also gives the CPU each request cost (this process,
   whose build also reads frames, builds prompts and writes the release, and the server) and
   the most requests this machine's cores could keep in flight at that cost:
   cores x latency / CPU per request. Where that ceiling is below 0.8 x c, the cap cannot be
   kept full on this machine whatever the engine does; a slower endpoint (`--latency 3`) needs
   ten times fewer requests per second for the same in-flight count.
1. Throughput: with the server answering every request after a fixed latency, the ideal rate
   at concurrency c is c / latency. The client should reach at least 0.8 of it.
2. Caption cost: input tokens per caption request by frames per request and image detail, as
   the server counts them by OpenAI's documented rules (85 tokens per low-detail image,
   85 + 170 per 512 px tile at high detail, text at 4 characters a token).

Run: .venv/bin/python bench/bench_llm.py [--concurrency 16 64 256] [--skip-client]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llm_server import FakeLLMServer  # noqa: E402
from PIL import Image  # noqa: E402

from vidcorpus.annotators.captions import Part, caption_request  # noqa: E402
from vidcorpus.annotators.client import LLMClient, LLMRequest  # noqa: E402
from vidcorpus.annotators.frames import Frame  # noqa: E402
from vidcorpus.annotators.prompts import load_prompt  # noqa: E402
from vidcorpus.annotators.verifiers import BlindAnswer  # noqa: E402
from vidcorpus.config import load_config  # noqa: E402
from vidcorpus.config.llm import AnnotatorConfig, Endpoint  # noqa: E402
from vidcorpus.media.synth import Scene, write_video  # noqa: E402
from vidcorpus.pipelines.build import build  # noqa: E402

PIPELINE_LATENCY_S = 0.3
PIPELINE_CONCURRENCIES = (16, 64, 256)
MIN_VIDEOS = 24
QA_PER_VIDEO = 5

LATENCY_S = 0.2
CONCURRENCIES = (1, 4, 16, 32)
ROUNDS = 5
"""Requests per run = concurrency x ROUNDS, so each run lasts about ROUNDS x LATENCY_S."""
TARGET_RATIO = 0.8
KEYFRAMES = (1, 2, 4, 8)
IMAGE_SIZES = ((512, 288), (768, 432), (1280, 720))
DETAILS = ("low", "high", "auto")


def client_for(server: FakeLLMServer, concurrency: int) -> LLMClient:
    endpoint = Endpoint("bench", server.base_url, "bench-model", 0.0, 256, 0)
    return LLMClient(endpoint, concurrency=concurrency, max_retries=0, timeout_s=30.0)


def question(i: int) -> LLMRequest[BlindAnswer]:
    messages = [{"role": "user", "content": f"Question: what happens in clip {i}?\nOptions:\nA. x\nB. y"}]
    return LLMRequest(load_prompt("blind"), messages, BlindAnswer, item_id=str(i))


def measure_throughput(concurrency: int) -> tuple[int, float]:
    """(requests, seconds) for concurrency x ROUNDS distinct requests at `concurrency` in flight."""
    with FakeLLMServer(latency_s=LATENCY_S) as server:
        client = client_for(server, concurrency)
        client.map([question(-1 - i) for i in range(concurrency)])  # open the connections first
        requests = [question(i) for i in range(concurrency * ROUNDS)]
        start = time.perf_counter()
        outcomes = client.map(requests)
        elapsed = time.perf_counter() - start
        client.close()
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed: {failed[0]}")
    return len(requests), elapsed


def jpeg(size: tuple[int, int], shade: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 40 + shade).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def caption_tokens(server: FakeLLMServer, client: LLMClient, keyframes: int, size: tuple[int, int], detail: str) -> int:
    video = {"video_id": "vbench", "duration_s": 60.0}
    clip = {"clip_id": "vbench_0000", "index": 0, "start_s": 0.0, "end_s": 8.0}
    frames = [Frame(8.0 * (k + 0.5) / keyframes, jpeg(size, k)) for k in range(keyframes)]
    config = AnnotatorConfig(image_detail=detail, image_max_side=max(size), max_frames=keyframes)
    request = caption_request(video, clip, Part(frames, 0, 1), None, config)
    result = client.call(request)
    if not result.ok:
        raise SystemExit(f"caption request failed: {result}")
    return result.usage.tokens_in


def write_videos(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"v{i:03d}.mp4"
        write_video(str(path), [Scene(15, 3 * i + 1), Scene(15, 3 * i + 2), Scene(15, 3 * i + 3)], size=(64, 48))
        paths.append(path)
    return paths


class ServerProcess:
    """tests/llm_server.py in its own process, so serving does not share the client's interpreter."""

    def __init__(self, latency_s: float):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llm_server.py"), "--latency",
                                      str(latency_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base_url = self.proc.stdout.readline().strip()

    def stats(self) -> dict:
        self.proc.stdin.close()
        return json.loads(self.proc.stdout.readlines()[-1])


def pipeline_in_flight(concurrencies: tuple[int, ...], latencies: tuple[float, ...] = (PIPELINE_LATENCY_S,)) -> float:
    """Prints a table per latency; returns the worst in-flight / concurrency ratio."""
    import logging
    logging.disable(logging.WARNING)
    most = max(max(MIN_VIDEOS, c) for c in concurrencies)
    root = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    (root / "videos").mkdir()
    videos = write_videos(root / "videos", most)
    base = ["clip.enabled=false", "tasks.enabled=false", "clips.mode=off", f"llm.qa_per_video={QA_PER_VIDEO}",
            "llm.max_retries=0", "llm.timeout_s=60"]

    def build_version(version: str, n: int, extra: list[str]) -> float:
        """Builds the version; returns the CPU seconds this process spent on it."""
        before = _cpu_s()
        listing = root / f"inputs-{n}.txt"
        listing.write_text("".join(f"{p}\n" for p in videos[:n]))
        build(str(listing), str(root / "out"), load_config(ROOT / "configs" / "tiny.yaml", base + extra),
              name="bench", version=version)
        return _cpu_s() - before

    build_version("0.0.0", most, ["llm.enabled=false"])  # scan, segment and stage every video once
    worst = 1.0
    for j, latency_s in enumerate(latencies):
        print(f"In flight through the pipeline: server latency {latency_s * 1000:.0f} ms, videos of 3 clips, "
              f"{QA_PER_VIDEO} QA each, no cache\n")
        print(f"{'concurrency':>11} {'videos':>7} {'requests':>9} {'active s':>9} {'in flight':>10} {'ratio':>6} "
              f"{'CPU ms/req':>11} {'CPU ceiling':>12}")
        for i, c in enumerate(concurrencies, start=1):
            n = max(MIN_VIDEOS, c)
            server = ServerProcess(latency_s)
            cpu_s = build_version(f"0.{i}.{j}", n, [f"llm.base_url={server.base_url}", f"llm.concurrency={c}",
                                                    f"llm.cache_dir={root / f'cache-{c}-{j}'}"])
            stats = server.stats()
            in_flight = stats["busy_s"] / stats["active_s"]
            worst = min(worst, in_flight / c)
            per_request = (cpu_s + stats["cpu_s"]) / stats["requests"]
            ceiling = (os.cpu_count() or 1) * latency_s / per_request
            print(f"{c:>11} {n:>7} {stats['requests']:>9} {stats['active_s']:>9.2f} {in_flight:>10.1f} "
                  f"{in_flight / c:>6.2f} {per_request * 1000:>11.2f} {ceiling:>12.0f}")
        print()
    print(f"worst ratio {worst:.2f} (target >= {TARGET_RATIO}): {'ok' if worst >= TARGET_RATIO else 'BELOW TARGET'}\n")
    return worst


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(PIPELINE_CONCURRENCIES))
    parser.add_argument("--latency", type=float, nargs="+", default=[PIPELINE_LATENCY_S],
                        help="server latencies of the pipeline tables, s (hosted VLMs answer in seconds)")
    parser.add_argument("--skip-client", action="store_true", help="only the pipeline table")
    args = parser.parse_args()
    started = time.perf_counter()
    pipeline_worst = pipeline_in_flight(tuple(args.concurrency), tuple(args.latency))
    if args.skip_client:
        sys.exit(0 if pipeline_worst >= TARGET_RATIO else 1)
    print(f"Throughput: server latency {LATENCY_S * 1000:.0f} ms, {ROUNDS} requests per slot, no cache\n")
    print(f"{'concurrency':>11} {'requests':>9} {'seconds':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6}")
    worst = 1.0
    for concurrency in CONCURRENCIES:
        n, elapsed = measure_throughput(concurrency)
        rate, ideal = n / elapsed, concurrency / LATENCY_S
        worst = min(worst, rate / ideal)
        print(f"{concurrency:>11} {n:>9} {elapsed:>8.2f} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f}")
    verdict = "ok" if worst >= TARGET_RATIO else "BELOW TARGET"
    print(f"\nworst ratio {worst:.2f} (target >= {TARGET_RATIO}): {verdict}\n")

    print("Input tokens per caption request (text + images), by frames per request and image detail\n")
    header = " ".join(f"{f'{w}x{h} {d}':>14}" for w, h in IMAGE_SIZES for d in DETAILS)
    print(f"{'frames':>9} {header}")
    with FakeLLMServer() as server:
        client = client_for(server, 1)
        for keyframes in KEYFRAMES:
            cells = [caption_tokens(server, client, keyframes, size, d) for size in IMAGE_SIZES for d in DETAILS]
            print(f"{keyframes:>9} " + " ".join(f"{c:>14}" for c in cells))
        client.close()
    print("\nauto counts as low for images up to 512 px, else high; differential captions add the previous caption's text.")
    print(f"total {time.perf_counter() - started:.1f} s")
    if min(worst, pipeline_worst) < TARGET_RATIO:
        sys.exit(1)


if __name__ == "__main__":
    main()
