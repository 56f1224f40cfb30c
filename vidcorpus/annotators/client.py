"""One client for every LLM call: bounded concurrency, retries, validated structured output, cache.

Built on the `openai` package with its own retries switched off, so the retries here are the
only ones and each is counted. A call never raises for a bad endpoint or a bad answer: it
returns an `LLMResult` (a validated pydantic value plus provenance and token usage) or an
`LLMFailure` (error class, message, attempts). Either way the caller decides what to record.

- Retried with exponential backoff and jitter: 408/409/429/5xx, timeouts, dropped connections
  and malformed response bodies. A `Retry-After` (or `retry-after-ms`) header sets the wait.
- Structured output: `response_format` carries a strict JSON schema generated from the pydantic
  output model; the reply is validated with that model. One repair round sends the invalid
  reply and the validation error back; a second invalid reply becomes an `LLMFailure`.
- Cached by (model, prompt id and version, exact request body) through `ResponseCache`:
  answers and deterministic failures (invalid after the repair round, refusals, requests the
  server rejects as malformed), so a rerun sends nothing it sent before; transport failures
  (after their retries) are not cached and are asked again.
- Everything a worker's clients share (in-flight cap, coalescing of identical requests, budget,
  tokens-per-minute, circuit breaker) lives in one `Engine`, whose event loop carries every
  request: `submit` hands a request to it from any thread and returns a future, so a caller
  puts many requests in flight without a thread each. Online requests go through
  `openai.AsyncOpenAI` on aiohttp, the cheapest transport per request the package offers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import openai
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from vidcorpus.annotators.batch import BATCH_PENDING, BatchCollector, BatchLineFailed, BatchPending, batch_collector
from vidcorpus.annotators.cache import ResponseCache, request_key
from vidcorpus.annotators.engine import Engine
from vidcorpus.annotators.prompts import Prompt
from vidcorpus.annotators.ratelimit import estimate_input_tokens
from vidcorpus.annotators.secrets import with_key
from vidcorpus.config.llm import AnnotatorConfig, Endpoint, Price, price_of, resolve_endpoint

log = logging.getLogger(__name__)

T = TypeVar("T", bound="OutputModel")

OPENAI_BASE_URL = "https://api.openai.com/v1"
RETRYABLE_STATUS = frozenset({408, 409, 429})
DETERMINISTIC_ERRORS = frozenset({"ValidationError", "Refusal", "BadRequestError", "UnprocessableEntityError"})
"""Failures the same request would meet again: cached with their outcome, never re-sent."""
MAX_RETRY_AFTER_S = 300.0
REPAIR_INSTRUCTION = (
    "Your previous reply was not valid for the required JSON schema.\n"
    "Validation error:\n{error}\n"
    "Reply again with only the corrected JSON object."
)


class OutputModel(BaseModel):
    """Base of every structured LLM output: unknown keys are errors (and the schema says so).

    Attribute docstrings become schema descriptions, so the model reads what each field means.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    schema_name: ClassVar[str] = "output"
    """The `json_schema.name` sent with requests for this output."""


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


NonEmptyStr = Annotated[str, AfterValidator(_not_blank)]
"""A string that must say something; checked by validation, not by the schema (strict mode has no minLength)."""


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out)


@dataclass(frozen=True)
class LLMRequest(Generic[T]):
    """What to ask (`messages`), what shape to get back (`output`), and what it annotates."""

    prompt: Prompt
    messages: list[dict[str, Any]]
    output: type[T]
    item_id: str


@dataclass(frozen=True)
class TranscriptionRequest(Generic[T]):
    """One audio file (WAV bytes) to transcribe into `output` (timed segments), for `item_id`;
    `prompt` names the call (id and version) in the cache key and the rows' provenance."""

    prompt: Prompt
    audio: bytes = field(repr=False)
    output: type[T]
    item_id: str
    language: str | None = None


@dataclass(frozen=True)
class Sent:
    """What making one outcome took: HTTP requests, of which retries (transport) and repairs."""

    requests: int = 0
    retries: int = 0
    repairs: int = 0


@dataclass(frozen=True)
class _Outcome:
    item_id: str
    model: str
    prompt_id: str
    prompt_version: int
    request_hash: str
    usage: Usage
    sent: Sent
    """As first made; a cache hit repeats it (so rows stay the same) and sends nothing."""
    cache_hit: bool
    """Answered without a request this run: from the cache, or shared with an identical one in flight."""
    price: Price
    batch: bool

    @property
    def attempts(self) -> int:
        return self.sent.requests

    @property
    def retries(self) -> int:
        return self.sent.retries

    @property
    def cost_usd(self) -> float:
        return self.cost_of(self.usage)

    def cost_of(self, usage: Usage) -> float:
        return self.price.cost_usd(usage.tokens_in, usage.tokens_out, self.batch)


@dataclass(frozen=True)
class LLMResult(_Outcome, Generic[T]):
    ok: ClassVar[bool] = True
    value: T = None  # type: ignore[assignment]

    @property
    def repaired(self) -> bool:
        return self.sent.repairs > 0


@dataclass(frozen=True)
class LLMFailure(_Outcome):
    ok: ClassVar[bool] = False
    error_class: str = ""
    message: str = ""

    @property
    def deterministic(self) -> bool:
        """The same request would fail the same way again: cached, so a rerun does not pay twice."""
        return self.error_class in DETERMINISTIC_ERRORS


Outcome = LLMResult | LLMFailure


@lru_cache(maxsize=None)
def json_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """A strict-mode JSON schema: every object closed, every property required, no defaults.

    Cached per model class; callers must treat the returned dict as read-only.
    """

    def tighten(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: tighten(v) for k, v in node.items() if k not in ("default", "title")}
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = sorted(node["properties"])
            return node
        if isinstance(node, list):
            return [tighten(v) for v in node]
        return node

    return tighten(model.model_json_schema())


class LLMClient:
    """Thread-safe; the clients of one worker process share one `Engine` (event loop, in-flight
    cap and limits)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        concurrency: int = 64,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        cache: ResponseCache | None = None,
        sleep: Callable[[float], None] = time.sleep,
        engine: Engine | None = None,
        price: Price | None = None,
        batch: BatchCollector | None = None,
    ):
        """Without `engine` the client gets its own, bounded by `concurrency` (and closes it)."""
        self.endpoint = endpoint
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else Engine(concurrency, sleep=sleep)
        self.concurrency = self.engine.concurrency
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.cache = cache
        self.price = price or Price()
        self.batch = batch is not None
        settings = {"api_key": endpoint.api_key or "unused",  # local servers (vLLM, Ollama) need no key
                    "base_url": endpoint.base_url or OPENAI_BASE_URL, "timeout": timeout_s, "max_retries": 0}
        self._openai: openai.AsyncOpenAI | None = self.engine.run(_async_openai(settings))
        self.collector = batch.with_client(openai.OpenAI(**settings)) if batch is not None else None

    @classmethod
    def from_config(
        cls,
        config: AnnotatorConfig,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        engine: Engine | None = None,
        endpoint: Endpoint | None = None,
    ) -> LLMClient | None:
        """The client for annotator `name`, or None when it is disabled or has no endpoint.
        `endpoint`, when given, replaces the annotator's own (ASR), and is always called online."""
        online = endpoint is not None
        endpoint = endpoint or resolve_endpoint(config, name, env)
        if endpoint is None:
            return None
        return cls(
            with_key(endpoint, config),
            concurrency=config.concurrency,
            max_retries=config.max_retries,
            timeout_s=config.timeout_s,
            backoff_base_s=config.backoff_base_s,
            backoff_max_s=config.backoff_max_s,
            cache=ResponseCache(config.cache_dir) if config.cache_dir else None,
            sleep=sleep,
            engine=engine,
            price=price_of(config, endpoint.model),
            batch=batch_collector(config, name, sleep) if config.mode == "batch" and not online else None,
        )

    def __repr__(self) -> str:
        e = self.endpoint
        return f"LLMClient(name={e.name!r}, model={e.model!r}, base_url={e.base_url!r}, concurrency={self.concurrency})"

    @property
    def closed(self) -> bool:
        return self._openai is None

    def close(self) -> None:
        """Close the connections and let go of the HTTP clients now, not at interpreter exit,
        when their finalisers can no longer run cleanly."""
        if self._openai is not None and not self.engine.closed:
            self.engine.run(self._openai.close())
        self._openai = None
        if self.collector is not None and self.collector.client is not None:
            self.collector.client.close()
            self.collector.client = None
        if self._owns_engine:
            self.engine.close()

    @property
    def model(self) -> str:
        return self.endpoint.model

    def body(self, request: LLMRequest) -> dict[str, Any]:
        """The exact chat-completions request body (also what the cache key hashes)."""
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": request.messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": request.output.schema_name,
                    "schema": json_schema_for(request.output),
                    "strict": True,
                },
            },
            "temperature": self.endpoint.temperature,
            "max_tokens": self.endpoint.max_tokens,
        }
        if self.endpoint.seed is not None:
            body["seed"] = self.endpoint.seed
        return body

    def map(self, requests: Iterable[LLMRequest]) -> list[Outcome]:
        """All requests in flight at once (within the engine's cap); outcomes in request order."""
        return [future.result() for future in [self.submit(r) for r in requests]]

    def call(self, request: LLMRequest) -> Outcome:
        return self.submit(request).result()

    def submit(self, request: LLMRequest | TranscriptionRequest) -> Future[Outcome]:
        """The request's outcome, to come: from the cache at once, else from the engine's loop.
        A `TranscriptionRequest` goes to `/audio/transcriptions`, always online (the Batch API
        does not serve audio)."""
        speech = isinstance(request, TranscriptionRequest)
        body = self.transcription_body(request) if speech else self.body(request)
        key = request_key(self.model, request.prompt.id, request.prompt.version, body)
        if (cached := self.from_cache(request, key)) is not None:
            done: Future[Outcome] = Future()
            done.set_result(cached)
            return done
        return self.engine.submit(self._ask(request, body, key))

    async def _ask(self, request: LLMRequest | TranscriptionRequest, body: dict[str, Any], key: str) -> Outcome:
        outcome, shared = await self.engine.once(key, lambda: self._send_now(request, body, key))
        return replace(outcome, item_id=request.item_id, cache_hit=True) if shared else outcome

    async def _send_now(self, request: LLMRequest | TranscriptionRequest, body: dict[str, Any], key: str) -> Outcome:
        """Ask the endpoint, unless the breaker is open or the budget spent; settle and cache.
        A batch round waits for all of its requests, so batch mode takes no in-flight slot."""
        async with nullcontext() if self.collector is not None else self.engine.slots:
            if (refusal := self.engine.refusal()) is not None:
                return self._failure(request, key, *refusal, sent=Sent(), usage=Usage())
            if isinstance(request, TranscriptionRequest):
                outcome = await self._transcribed(request, body, key)
            else:
                await self.engine.admit(estimate_input_tokens(body["messages"]))
                outcome = await self._complete(request, body, key)
        return await self._settled(outcome)

    async def _settled(self, outcome: Outcome) -> Outcome:
        if (entry := self.settle(outcome)) is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cache.put, outcome.request_hash, entry)
        return outcome

    def settle(self, outcome: Outcome) -> dict[str, Any] | None:
        """Charge the budget and tell the breaker; returns the cache entry for what a rerun must
        not ask again (written off the loop: the cache may be a bucket)."""
        self.engine.budget.charge(outcome.cost_usd, outcome.usage.tokens_in + outcome.usage.tokens_out)
        transport = None if outcome.ok or outcome.deterministic else f"{outcome.error_class}: {outcome.message[:200]}"
        if outcome.ok or outcome.error_class != BATCH_PENDING:
            self.engine.breaker.record(transport)
        if self.cache is None or not (outcome.ok or outcome.deterministic):
            return None
        entry = {
            "model": self.model,
            "prompt_id": outcome.prompt_id,
            "prompt_version": outcome.prompt_version,
            "usage": {"tokens_in": outcome.usage.tokens_in, "tokens_out": outcome.usage.tokens_out},
            "sent": {"requests": outcome.sent.requests, "retries": outcome.sent.retries,
                     "repairs": outcome.sent.repairs},
        }
        if outcome.ok:
            entry["content"] = outcome.value.model_dump_json()
        else:
            entry["failure"] = {"error_class": outcome.error_class, "message": outcome.message}
        return entry

    def from_cache(self, request: LLMRequest, key: str) -> Outcome | None:
        entry = self.cache.get(key) if self.cache is not None else None
        if entry is None:
            return None
        try:
            usage = Usage(**entry["usage"])
            sent = Sent(**entry.get("sent", {}))
            if "failure" in entry:
                failure = entry["failure"]
                return self._failure(request, key, failure["error_class"], failure["message"], sent=sent,
                                     usage=usage, cache_hit=True)
            value = request.output.model_validate_json(entry["content"])
        except (ValidationError, KeyError, TypeError):
            return None
        return self._result(request, key, value, usage, sent=sent, cache_hit=True)

    def transcription_body(self, request: TranscriptionRequest) -> dict[str, Any]:
        """The transcription request's fields as sent, with the audio named by its sha256 (what
        the cache key hashes)."""
        body: dict[str, Any] = {"model": self.model, "audio_sha256": hashlib.sha256(request.audio).hexdigest(),
                                "response_format": "verbose_json", "timestamp_granularities": ["segment"],
                                "temperature": 0.0}
        if request.language:
            body["language"] = request.language
        return body

    async def _transcribed(self, request: TranscriptionRequest, body: dict[str, Any], key: str) -> Outcome:
        """Speech to timed segments: one round with retries, no repair round."""
        reply = await self._send(body, request, key, lambda: self._transcription_reply(request, body))
        sent = Sent(reply.attempts, reply.attempts - 1)
        if reply.error is not None:
            return self._failure(request, key, *reply.error, sent=sent, usage=reply.usage)
        try:
            return self._result(request, key, request.output.model_validate_json(reply.content), reply.usage, sent=sent)
        except ValidationError as exc:
            return self._failure(request, key, "ValidationError", _describe_validation(exc), sent=sent,
                                 usage=reply.usage)

    async def _transcription_reply(self, request: TranscriptionRequest, body: dict[str, Any]) -> _Reply:
        fields = {k: v for k, v in body.items() if k not in ("model", "audio_sha256")}
        verbose = await self._openai.audio.transcriptions.create(
            model=self.model, file=("audio.wav", request.audio, "audio/wav"), **fields)
        segments = getattr(verbose, "segments", None)
        if segments is None:
            raise _MalformedResponse(f"expected a verbose_json transcription, got {type(verbose).__name__}")
        content = {"language": getattr(verbose, "language", None) or None,
                   "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in segments]}
        return _Reply(attempts=1, content=json.dumps(content))

    async def _complete(self, request: LLMRequest, body: dict[str, Any], key: str) -> Outcome:
        """First round, then at most one repair round; each round retries transport errors."""
        messages = list(body["messages"])
        usage, sent = Usage(), Sent()
        for repair_round in (False, True):
            reply = await self._send({**body, "messages": messages}, request, f"{key}-repair" if repair_round else key)
            sent = Sent(sent.requests + reply.attempts, sent.retries + reply.attempts - 1,
                        sent.repairs + repair_round)
            usage += reply.usage
            if reply.error is not None:
                return self._failure(request, key, *reply.error, sent=sent, usage=usage)
            try:
                value = request.output.model_validate_json(reply.content)
            except ValidationError as exc:
                error = _describe_validation(exc)
                if repair_round:
                    return self._failure(request, key, "ValidationError", error, sent=sent, usage=usage)
                log.info("invalid %s reply for %s, asking for a repair", request.prompt.id, request.item_id)
                messages += [
                    {"role": "assistant", "content": reply.content},
                    {"role": "user", "content": REPAIR_INSTRUCTION.format(error=error)},
                ]
                continue
            return self._result(request, key, value, usage, sent=sent)
        raise AssertionError("unreachable")

    async def _send(self, body: dict[str, Any], request: LLMRequest | TranscriptionRequest, key: str,
                    post: Callable[[], Any] | None = None) -> _Reply:
        """One round: the first attempt plus up to `max_retries` retries of transient errors.
        `post` makes one attempt (default: the chat completion of `body`)."""
        post = post or (lambda: self._chat_reply(body, key))
        for attempt in range(self.max_retries + 1):
            try:
                reply = await post()
            except BatchPending as exc:
                return _Reply(attempts=attempt + 1, error=(BATCH_PENDING, str(exc)))
            except (openai.APIConnectionError, _MalformedResponse, json.JSONDecodeError, BatchLineFailed) as exc:
                error, retry_after = exc, None
            except openai.APIStatusError as exc:
                if not _retryable_status(exc.status_code):
                    return _Reply(attempts=attempt + 1, error=self._error(exc))
                error, retry_after = exc, _retry_after_s(exc.response.headers)
            else:
                return replace(reply, attempts=attempt + 1)
            if attempt == self.max_retries:
                return _Reply(attempts=attempt + 1, error=self._error(error))
            delay = 0.0 if self.collector is not None else self._delay(attempt, key, retry_after)
            log.warning(
                "%s for %s (%s), retry %d/%d in %.2fs",
                type(error).__name__, request.item_id, request.prompt.id, attempt + 1, self.max_retries, delay,
            )
            await self.engine.pause(delay)
        raise AssertionError("unreachable")

    async def _chat_reply(self, body: dict[str, Any], key: str) -> _Reply:
        completion = await self._transport(body, key)
        if not isinstance(completion, dict):
            raise _MalformedResponse(f"expected a chat completion, got {type(completion).__name__}")
        return _reply_of(completion, attempts=1)

    async def _transport(self, body: dict[str, Any], custom_id: str) -> Any:
        """One request's completion, as the JSON object the server sent: posted now, or a line
        of this round's batch (`custom_id`: the cache key)."""
        if self.collector is not None:
            return await asyncio.wrap_future(self.collector.add(custom_id, body))
        # the body is already the exact wire format: post it as is, and take the reply as plain
        # JSON (the typed `chat.completions.create` re-walks every message and builds a model of
        # the reply: most of a request's CPU, which caps requests per second on a small worker)
        return await self._openai.post("/chat/completions", body=body, cast_to=object)

    def _delay(self, attempt: int, key: str, retry_after: float | None) -> float:
        """Retry-After when the server gives one, else capped exponential backoff with jitter.

        The jitter is drawn from a generator seeded by (request, attempt): concurrent requests
        spread out, yet a run's schedule does not depend on global random state.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return ceiling * random.Random(f"{key}:{attempt}").uniform(0.5, 1.0)

    def _error(self, exc: BaseException) -> tuple[str, str]:
        return type(exc).__name__, self._redact(str(exc))

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key
        return text.replace(key, "***") if key else text

    def _result(self, request: LLMRequest, key: str, value: OutputModel, usage: Usage, *, sent: Sent,
                cache_hit: bool = False) -> LLMResult:
        return LLMResult(**self._provenance(request, key, usage, sent, cache_hit), value=value)

    def _failure(self, request: LLMRequest, key: str, error_class: str, message: str, *, sent: Sent,
                 usage: Usage, cache_hit: bool = False) -> LLMFailure:
        return LLMFailure(**self._provenance(request, key, usage, sent, cache_hit), error_class=error_class,
                          message=self._redact(message)[:2000])

    def _provenance(self, request: LLMRequest, key: str, usage: Usage, sent: Sent, cache_hit: bool) -> dict:
        return dict(item_id=request.item_id, model=self.model, prompt_id=request.prompt.id,
                    prompt_version=request.prompt.version, request_hash=key, usage=usage, sent=sent,
                    cache_hit=cache_hit, price=self.price, batch=self.batch)


@dataclass(frozen=True)
class _Reply:
    attempts: int
    content: str = ""
    usage: Usage = Usage()
    error: tuple[str, str] | None = None


class _MalformedResponse(Exception):
    """A 200 response whose body is not a chat completion (e.g. cut short): retried."""


def _reply_of(completion: dict[str, Any], attempts: int) -> _Reply:
    """A chat completion's JSON object → its content, usage, or why it has none."""
    counted = completion.get("usage") or {}
    usage = Usage(counted.get("prompt_tokens") or 0, counted.get("completion_tokens") or 0)
    if not completion.get("choices"):
        return _Reply(attempts, usage=usage, error=("EmptyResponse", "response has no choices"))
    message = completion["choices"][0].get("message") or {}
    if message.get("refusal"):
        return _Reply(attempts, usage=usage, error=("Refusal", message["refusal"]))
    return _Reply(attempts, content=message.get("content") or "", usage=usage)


async def _async_openai(settings: dict[str, Any]) -> openai.AsyncOpenAI:
    """Made on the engine's loop, where its aiohttp session will live."""
    return openai.AsyncOpenAI(**settings, http_client=openai.DefaultAioHttpClient(timeout=settings["timeout"]))


def _retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or HTTP date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _describe_validation(exc: ValidationError) -> str:
    """Compact error text for the repair prompt: location and message, not the whole input."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False)[:20]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{where}: {err['msg']}")
    return "\n".join(lines)
