"""A local OpenAI-compatible chat-completions server for the annotator tests and benchmark.

`FakeLLMServer` runs `http.server` in a thread on 127.0.0.1 (port 0) and answers
`POST /v1/chat/completions` with schema-valid JSON for each of the annotators' output schemas
(picked by `response_format.json_schema.name`), derived deterministically from the request.
It counts requests, keeps their bodies, and can inject faults on the Nth request or on
requests whose body contains a pattern: 429 with Retry-After, 500, a response slower than the
client's timeout, a dropped connection, a truncated body, a reply that is not JSON, and a
reply that is JSON but not schema-valid.

It also serves the Batch API (`POST /v1/files`, `POST /v1/batches`, `GET /v1/batches/<id>`,
`GET /v1/files/<id>/content`): a batch is `in_progress` at its first poll and done at the
second, each line answered like an online request (faults included: a transport fault becomes
an error line); `expire_batches` makes the next batches expire with only their first half done.

Token usage follows OpenAI's documented accounting: text costs len/4 tokens; an image costs
85 tokens at low detail and 85 + 170 per 512 px tile at high detail (after scaling to fit
2048 x 2048 and then to 768 px on the short side); `auto` means low for images up to 512 px.

QA sets have planted flaws so that every verifier has something to find (`quirks=True`):
the blind check answers item 0 right (and every other multiple-choice item wrong); the visual
check answers item 2 wrong; in sets of 6 or more items, item 3 cites the whole video as the
span of a short clip, the CoT for item 4 reaches another answer, and the last item repeats
item 1's question in other case and punctuation. The CoT, blind and visual answers name an
option by its text, so they stay right or wrong however the options were shuffled.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

FAULT_KINDS = ("rate_limit", "server_error", "timeout", "drop", "truncated", "invalid_json", "schema_invalid")
QUESTION_TYPES = ("temporal_order", "causal", "counting", "spatial", "descriptive", "before_after", "detail")
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
CLIP_LINE = re.compile(r"^- (\S+) \[([\d.]+)-([\d.]+) s\]", re.MULTILINE)


@dataclass
class Fault:
    """Inject `kind` on request number `nth` (1-based) or on bodies containing `pattern`, `times` times."""

    kind: str
    nth: int | None = None
    pattern: str | None = None
    times: int = 1
    retry_after: float = 0.0
    sleep_s: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")

    def matches(self, number: int, raw: str) -> bool:
        if self.times <= 0:
            return False
        return (self.nth is not None and self.nth == number) or (self.pattern is not None and self.pattern in raw)


@dataclass
class FakeLLMServer:
    latency_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    quirks: bool = True
    api_key: str | None = None
    """When set, requests must carry `Authorization: Bearer <api_key>` (else 401)."""
    max_qa_items: int | None = None
    """When set, QA sets hold at most this many items, whatever was asked."""
    models: list[str] | None = None
    """What `GET /v1/models` lists; None answers 404 there, as endpoints without a listing do."""
    expire_batches: int = 0
    """The next this many batches expire half done."""

    def __post_init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fired: list[tuple[int, str]] = []
        self._count = 0
        self._in_flight = 0
        self.max_in_flight = 0
        self.busy_s = 0.0
        """Sum of every request's time in the server: busy_s / active_s is the average in flight."""
        self.first_start: float | None = None
        self.last_end: float | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> FakeLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _Server(("127.0.0.1", port), handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._count

    @property
    def active_s(self) -> float:
        """Seconds from the first request's arrival to the last response."""
        return (self.last_end - self.first_start) if self.first_start is not None else 0.0

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def _admit(self, raw: str) -> tuple[int, Fault | None]:
        """Number this request and claim the first fault that applies to it."""
        with self._lock:
            if self.first_start is None:
                self.first_start = time.perf_counter()
            self._count += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            number = self._count
            for fault in self.faults:
                if fault.matches(number, raw):
                    fault.times -= 1
                    self.fired.append((number, fault.kind))
                    return number, fault
        return number, None

    def _leave(self, started: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self.last_end = time.perf_counter()
            self.busy_s += self.last_end - started

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.bodies.append(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    owner: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        if self.path.rstrip("/").endswith(("/files", "/batches")):
            return self._batch_api(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path.rstrip("/").endswith("/audio/transcriptions"):
            return self._transcription(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8")
        started = time.perf_counter()
        number, fault = self.owner._admit(raw)
        try:
            self._respond(raw, number, fault)
        finally:
            self.owner._leave(started)

    def do_GET(self) -> None:
        server = self.owner
        if self.path == "/health":  # as `vllm serve` answers once the model is loaded
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
            return self._send_json(401, {"error": {"message": "invalid api key", "type": "auth"}})
        if (match := re.search(r"/files/([\w-]+)/content$", self.path)) and match[1] in server.files:
            return self._send_bytes(200, server.files[match[1]])
        if (match := re.search(r"/batches/([\w-]+)$", self.path)) and match[1] in server.batches:
            return self._send_json(200, _poll_batch(server, match[1]))
        if not self.path.rstrip("/").endswith("/models") or server.models is None:
            return self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        self._send_json(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                           "owned_by": "test"} for m in server.models]})

    def _respond(self, raw: str, number: int, fault: Fault | None) -> None:
        server = self.owner
        if server.latency_s:
            time.sleep(server.latency_s)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
            return self._send_json(401, {"error": {"message": "invalid api key", "type": "auth"}})
        body = json.loads(raw)
        server._record(body)
        kind = fault.kind if fault else None
        if kind == "rate_limit":
            return self._send_json(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                   {"Retry-After": f"{fault.retry_after:g}"})
        if kind == "server_error":
            return self._send_json(500, {"error": {"message": "internal error", "type": "server_error"}})
        if kind == "drop":
            self.close_connection = True
            return
        if kind == "timeout":
            time.sleep(fault.sleep_s)
        content = answer(body, quirks=server.quirks, max_qa_items=server.max_qa_items)
        if kind == "invalid_json":
            content = "Sure! Here is what you asked for: " + content[: len(content) // 2]
        elif kind == "schema_invalid":
            content = json.dumps({"unexpected": True})
        payload = completion(body, content, number)
        if kind == "truncated":
            data = json.dumps(payload).encode()
            return self._send_bytes(200, data[: len(data) // 2])
        self._send_json(200, payload)

    def _transcription(self, data: bytes) -> None:
        """`verbose_json` with one segment per loud stretch of the uploaded WAV (times within it)."""
        server = self.owner
        started = time.perf_counter()
        _, fault = server._admit("audio/transcriptions")
        try:
            if fault is not None and fault.kind == "server_error":
                return self._send_json(500, {"error": {"message": "internal error", "type": "server_error"}})
            fields = _multipart_fields(self.headers.get("Content-Type", ""), data)
            audio = fields.pop("file")
            server._record({"path": "/audio/transcriptions", **{k: v.decode() for k, v in fields.items()},
                            "audio_bytes": len(audio)})
            segments = loud_segments(audio)
            self._send_json(200, {"task": "transcribe", "language": "english", "duration": 0.0,
                                  "text": " ".join(s["text"] for s in segments), "segments": segments})
        finally:
            server._leave(started)

    def _batch_api(self, data: bytes) -> None:
        server = self.owner
        with server._lock:
            if self.path.rstrip("/").endswith("/files"):
                file_id = f"file-{len(server.files) + 1}"
                server.files[file_id] = _multipart_file(self.headers.get("Content-Type", ""), data)
                return self._send_json(200, {"id": file_id, "object": "file", "bytes": len(server.files[file_id]),
                                             "created_at": 0, "filename": "input.jsonl", "purpose": "batch",
                                             "status": "processed"})
            request = json.loads(data)
            batch_id = f"batch-{len(server.batches) + 1}"
            server.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "created_at": 0,
                "completion_window": request["completion_window"], "input_file_id": request["input_file_id"],
                "status": "validating", "output_file_id": None, "error_file_id": None, "request_counts": None,
            }
        self._send_json(200, server.batches[batch_id])

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault)
            self.close_connection = True


# ---- batches ---------------------------------------------------------------------------------


def _multipart_fields(content_type: str, data: bytes) -> dict[str, bytes]:
    """Every part of a multipart/form-data upload by name (a repeated name keeps its last part)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


def loud_segments(wav: bytes, threshold: float = 0.05, gap_s: float = 0.05) -> list[dict[str, Any]]:
    """Whisper-style segments for the stretches of a 16-bit mono WAV louder than `threshold`
    (gaps under `gap_s` bridged): segment k says "tone k", with its start and end in the file."""
    import io
    import wave

    import numpy as np

    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > threshold)
    runs: list[list[int]] = []
    for i in loud:
        if runs and i - runs[-1][1] <= gap_s * rate:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    return [{"id": k, "seek": 0, "start": round(a / rate, 3), "end": round((b + 1) / rate, 3), "text": f" tone {k}",
             "tokens": [], "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
            for k, (a, b) in enumerate(runs)]


def _multipart_file(content_type: str, data: bytes) -> bytes:
    """The `file` part of a multipart/form-data upload."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise ValueError("no file part in the upload")


def _poll_batch(server: FakeLLMServer, batch_id: str) -> dict[str, Any]:
    """in_progress at the first poll; at the second, every line answered (or half, if it expires)."""
    with server._lock:
        batch = server.batches[batch_id]
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
            return dict(batch)
        if batch["status"] != "in_progress":
            return dict(batch)
        expire = server.expire_batches > 0
        server.expire_batches -= expire
    lines = [json.loads(line) for line in server.files[batch["input_file_id"]].splitlines() if line.strip()]
    done = lines[: len(lines) // 2] if expire else lines
    outputs, errors = [], []
    for line in done:
        status, body = _batch_answer(server, line)
        (outputs if status == 200 else errors).append(
            {"id": f"req-{line['custom_id']}", "custom_id": line["custom_id"], "error": None,
             "response": {"status_code": status, "request_id": "r", "body": body}})
    for line in lines[len(done):]:
        errors.append({"id": f"req-{line['custom_id']}", "custom_id": line["custom_id"], "response": None,
                       "error": {"code": "batch_expired", "message": "This request could not be executed before the "
                                                                         "completion window expired."}})
    with server._lock:
        for kind, rows in (("output_file_id", outputs), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(server.files) + 1}"
                server.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[kind] = file_id
        batch["status"] = "expired" if expire else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}
        return dict(batch)


def _batch_answer(server: FakeLLMServer, line: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One batch line answered as the online endpoint would, its faults included."""
    raw = json.dumps(line["body"])
    number, fault = server._admit(raw)
    try:
        server._record(line["body"])
        kind = fault.kind if fault else None
        if kind in ("rate_limit", "server_error", "timeout", "drop", "truncated"):
            return 500, {"error": {"message": "internal error", "type": "server_error"}}
        content = answer(line["body"], quirks=server.quirks)
        if kind == "invalid_json":
            content = "Sure! " + content[: len(content) // 2]
        elif kind == "schema_invalid":
            content = json.dumps({"unexpected": True})
        return 200, completion(line["body"], content, number)
    finally:
        server._leave(time.perf_counter())


# ---- responses -------------------------------------------------------------------------------


def completion(body: dict[str, Any], content: str, number: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {
            "prompt_tokens": prompt_tokens(body["messages"]),
            "completion_tokens": math.ceil(len(content) / 4),
            "total_tokens": prompt_tokens(body["messages"]) + math.ceil(len(content) / 4),
        },
    }


def answer(body: dict[str, Any], quirks: bool = True, max_qa_items: int | None = None) -> str:
    """Schema-valid JSON text for the request's output schema, derived from the request only."""
    name = body["response_format"]["json_schema"]["name"]
    text = "\n".join(_texts(m) for m in body["messages"] if m["role"] in ("system", "user"))
    make = {
        "clip_caption": _caption,
        "video_summary": _summary,
        "qa_set": _qa_set,
        "cot_trace": _cot,
        "blind_answer": _blind,
        "visual_answer": _visual,
    }[name]
    reply = make(body, text, quirks)
    if max_qa_items is not None and name == "qa_set":
        reply["items"] = reply["items"][:max_qa_items]
    return json.dumps(reply)


def _caption(body: dict, text: str, quirks: bool) -> dict:
    images = [p["image_url"]["url"] for m in body["messages"] for p in _parts(m) if p.get("type") == "image_url"]
    digest = hashlib.sha256("".join(images).encode()).hexdigest()[:8]
    stamps = re.search(r"taken at: ([^\n]*?)\.\n", text)
    differential = "Caption of the previous" in text
    return {
        "caption": f"A man in a red jacket walks past a bicycle; frames at {stamps[1] if stamps else '?'} "
                   f"({len(images)} images, digest {digest}).",
        "changes_since_previous": "The camera turned toward the street." if differential else None,
    }


def _summary(body: dict, text: str, quirks: bool) -> dict:
    parts = len(CLIP_LINE.findall(text)) or len(re.findall(r"^\[[\d.]+-[\d.]+ s\]", text, re.MULTILINE))
    return {
        "summary": f"Across {parts} parts, the red-jacket man walks past a bicycle and leaves.",
        "entities": [
            {"name": "red-jacket man", "aliases": ["man in a red jacket"], "description": "A man wearing a red jacket."},
            {"name": "bicycle", "aliases": [], "description": "A parked bicycle."},
        ],
    }


def _qa_set(body: dict, text: str, quirks: bool) -> dict:
    clips = CLIP_LINE.findall(text)
    n = int(re.search(r"Write (\d+) question", text)[1])
    duration = float(re.search(r"Video of ([\d.]+) s", text)[1])
    items = []
    for i in range(n):
        clip_id, start, end = clips[i % len(clips)]
        span = [float(start), float(end)]
        if quirks and n >= 6 and i == 3:
            span = [0.0, duration]
        question = f"Question {i + 1}: what does the red-jacket man do in clip {clip_id}?"
        if quirks and n >= 6 and i == n - 1:
            question = items[1]["question"].upper().replace("?", " ?!")
        multiple_choice = i % 2 == 0
        items.append({
            "question": question,
            "options": [option_text(i, k) for k in range(4)] if multiple_choice else None,
            "answer": qa_answer(i, multiple_choice),
            "question_type": QUESTION_TYPES[i % len(QUESTION_TYPES)],
            "evidence": [{"clip_id": clip_id, "start_s": span[0], "end_s": span[1]}],
        })
    return {"items": items}


def qa_answer(i: int, multiple_choice: bool) -> str:
    """Item i's answer: letters A, B, C, D in turn for multiple choice, else '<i+1> times'."""
    return "ABCD"[(i // 2) % 4] if multiple_choice else f"{i + 1} times"


def option_text(i: int, k: int) -> str:
    return f"He does thing {k} ({i})"


def right_answer(i: int, multiple_choice: bool, offset: int = 0) -> str:
    """Item i's answer as option text (the right one, or `offset` options further on)."""
    if not multiple_choice:
        return f"{i + 1} times" if not offset else "I cannot tell"
    return option_text(i, ("ABCD".index(qa_answer(i, True)) + offset) % 4)


def _question_number(text: str) -> int:
    """The item number the question text carries (-1 for a question the server did not write)."""
    found = re.search(r"Question (\d+):", text)
    return int(found[1]) - 1 if found else -1


def _cot(body: dict, text: str, quirks: bool) -> dict:
    i = _question_number(text)
    clip_id = re.search(r"in clip (\S+?)\?", text)[1]
    start, end = next((float(s), float(e)) for c, s, e in CLIP_LINE.findall(text) if c == clip_id)
    multiple_choice = "Options:" in text
    final = right_answer(i, multiple_choice, offset=int(quirks and i == 4))
    if not multiple_choice and not (quirks and i == 4):
        final = f"{NUMBER_WORDS[i + 1]} times" if i + 1 < len(NUMBER_WORDS) else final
    return {
        "steps": [
            {"kind": "perception", "text": f"In {clip_id} the red-jacket man walks.", "start_s": start, "end_s": end},
            {"kind": "reasoning", "text": "So the answer follows from what he does there.", "start_s": None, "end_s": None},
        ],
        "final_answer": final,
    }


def _blind(body: dict, text: str, quirks: bool) -> dict:
    i = _question_number(text)
    if i < 0:  # a question the server did not write: a plain guess
        return {"answer": "A" if "Options:" in text else "I cannot tell"}
    return {"answer": right_answer(i, "Options:" in text, offset=int(not (quirks and i == 0)))}


def _visual(body: dict, text: str, quirks: bool) -> dict:
    i = _question_number(text)
    return {"answer": right_answer(i, "Options:" in text, offset=int(quirks and i == 2))}


# ---- token accounting ------------------------------------------------------------------------


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    text = sum(len(_texts(m)) for m in messages)
    images = sum(image_tokens(p["image_url"]) for m in messages for p in _parts(m) if p.get("type") == "image_url")
    return math.ceil(text / 4) + images


def image_tokens(image_url: dict[str, str]) -> int:
    detail = image_url.get("detail", "auto")
    width, height = _image_size(image_url["url"])
    if detail == "low" or (detail == "auto" and max(width, height) <= 512):
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def _image_size(data_url: str) -> tuple[int, int]:
    data = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _texts(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def main(argv: list[str]) -> None:
    """Serve from another process. With `--port N [--startup-delay S]`: a stand-in for `vllm serve`
    in the vLLM worker tests (not listening until the delay is over; serves until killed).
    Without `--port` (benchmarks): prints the base URL, serves until stdin closes, then prints
    the request statistics as JSON."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.port is not None:
        time.sleep(args.startup_delay)
        server = FakeLLMServer(quirks=False, latency_s=args.latency)
        server.start(args.port)
        print(f"serving on {server.base_url}", flush=True)
        threading.Event().wait()
    with FakeLLMServer(latency_s=args.latency) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()
        stats = {"requests": server.request_count, "busy_s": server.busy_s, "active_s": server.active_s,
                 "max_in_flight": server.max_in_flight, "cpu_s": time.process_time()}
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
