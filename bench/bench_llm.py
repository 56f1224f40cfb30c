"""LLM client benchmark against the local OpenAI-compatible test server.

1. Throughput: with the server answering every request after a fixed latency, the ideal rate
   at concurrency c is c / latency. The client should reach at least 0.8 of it.
2. Caption cost: input tokens per caption request by frames per request and image detail, as
   the server counts them by OpenAI's documented rules (85 tokens per low-detail image,
   85 + 170 per 512 px tile at high detail, text at 4 characters a token).

Run: .venv/bin/python bench/bench_llm.py   (about 15 s)
"""

from __future__ import annotations

import io
import sys
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
from vidcorpus.config.llm import AnnotatorConfig, Endpoint  # noqa: E402

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


def main() -> None:
    started = time.perf_counter()
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
    if worst < TARGET_RATIO:
        sys.exit(1)


if __name__ == "__main__":
    main()
