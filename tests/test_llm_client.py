"""The LLM client against a local OpenAI-compatible server: retries, repair, cache, concurrency, secrecy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from llm_server import FakeLLMServer, Fault

from vidcorpus.annotators.cache import ResponseCache, request_key
from vidcorpus.annotators.client import LLMClient, LLMRequest, _retry_after_s, json_schema_for
from vidcorpus.annotators.prompts import load_prompt
from vidcorpus.annotators.qa import QASet
from vidcorpus.annotators.verifiers import BlindAnswer
from vidcorpus.config.llm import AnnotatorConfig, Endpoint

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"


def blind_question(text: str = "Which colour is the jacket?") -> LLMRequest[BlindAnswer]:
    messages = [{"role": "user", "content": f"Question: {text}\nOptions:\nA. red\nB. blue"}]
    return LLMRequest(load_prompt("blind"), messages, BlindAnswer, item_id=f"item:{text}")


def make_client(server: FakeLLMServer, sleeps: list[float] | None = None, **overrides) -> LLMClient:
    settings = dict(concurrency=4, max_retries=5, timeout_s=2.0, backoff_base_s=0.5, backoff_max_s=8.0)
    settings.update(overrides)
    endpoint = Endpoint("blind", server.base_url, "fake-model", 0.0, 256, 0, api_key=SECRET)
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return LLMClient(endpoint, sleep=record, **settings)


def test_transient_errors_are_retried_counted_and_retry_after_is_honoured():
    faults = [
        Fault("rate_limit", nth=1, retry_after=7),
        Fault("server_error", nth=2),
        Fault("drop", nth=3),
        Fault("truncated", nth=4),
        Fault("timeout", nth=5, sleep_s=0.8),
    ]
    sleeps: list[float] = []
    with FakeLLMServer(faults=faults, api_key=SECRET) as server:
        result = make_client(server, sleeps, timeout_s=0.3).call(blind_question())
        assert server.request_count == 6
    assert result.ok and result.value.answer == "A"
    assert (result.attempts, result.retries, result.repaired) == (6, 5, False)
    assert [kind for _, kind in server.fired] == ["rate_limit", "server_error", "drop", "truncated", "timeout"]
    assert sleeps[0] == 7.0  # Retry-After, not the backoff schedule
    assert result.usage.tokens_in > 0 and result.usage.tokens_out > 0


def test_backoff_grows_exponentially_with_jitter_then_gives_up_with_a_failure_value():
    sleeps: list[float] = []
    with FakeLLMServer(faults=[Fault("server_error", pattern="jacket", times=99)]) as server:
        client = make_client(server, sleeps, max_retries=3)
        outcome = client.call(blind_question())
        assert server.request_count == 4
    assert not outcome.ok
    assert (outcome.error_class, outcome.attempts) == ("InternalServerError", 4)
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.5 * 0.5 * 2**attempt <= delay <= 0.5 * 2**attempt
    assert client._delay(2, "k", None) == client._delay(2, "k", None) != client._delay(2, "other", None)
    assert client._delay(9, "k", None) <= 8.0  # capped at backoff_max_s


def test_client_errors_are_not_retried():
    with FakeLLMServer(api_key="another-key") as server:
        outcome = make_client(server).call(blind_question())
        assert server.request_count == 1
    assert not outcome.ok and outcome.error_class == "AuthenticationError" and outcome.attempts == 1


@pytest.mark.parametrize("fault", ["invalid_json", "schema_invalid"])
def test_an_invalid_reply_gets_one_repair_round_with_the_error(fault):
    with FakeLLMServer(faults=[Fault(fault, nth=1)]) as server:
        result = make_client(server).call(blind_question())
        assert server.request_count == 2
    assert result.ok and result.repaired and result.attempts == 2
    repair = server.bodies[1]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"] != ""
    assert repair[-1]["role"] == "user" and "Validation error" in repair[-1]["content"]
    assert repair[:-2] == server.bodies[0]["messages"]


def test_a_second_invalid_reply_is_a_failure_not_a_drop():
    with FakeLLMServer(faults=[Fault("schema_invalid", nth=1, times=1), Fault("schema_invalid", nth=2)]) as server:
        outcome = make_client(server).call(blind_question())
    assert not outcome.ok
    assert outcome.error_class == "ValidationError" and "answer" in outcome.message and outcome.attempts == 2


def test_requests_carry_a_strict_json_schema_from_the_output_model():
    with FakeLLMServer() as server:
        make_client(server).call(blind_question())
    response_format = server.bodies[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "blind_answer" and response_format["json_schema"]["strict"]

    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    schema = json_schema_for(QASet)
    found = list(objects(schema))
    assert len(found) == 3  # QASet, QAItem, EvidenceSpan
    for node in found:
        assert node["additionalProperties"] is False
        assert sorted(node["required"]) == sorted(node["properties"])
    assert "default" not in str(schema)


def test_cache_makes_a_rerun_free_and_keys_on_model_prompt_version_and_request(tmp_path: Path):
    cache = ResponseCache(str(tmp_path / "cache"))
    with FakeLLMServer() as server:
        first = make_client(server, cache=cache).call(blind_question())
        again = make_client(server, cache=cache).call(blind_question())
        assert server.request_count == 1
        other_question = make_client(server, cache=cache).call(blind_question("Which colour is the bicycle?"))
        assert server.request_count == 2
        endpoint = Endpoint("blind", server.base_url, "other-model", 0.0, 256, 0)
        other_model = LLMClient(endpoint, cache=cache).call(blind_question())
        assert server.request_count == 3
        body = make_client(server).body(blind_question())
    assert not first.cache_hit and again.cache_hit and again.sent == first.sent  # as first made; nothing sent now
    assert (again.value, again.usage, again.request_hash) == (first.value, first.usage, first.request_hash)
    assert len({first.request_hash, other_question.request_hash, other_model.request_hash}) == 3
    assert (tmp_path / "cache" / first.request_hash[:2] / f"{first.request_hash}.json").is_file()
    assert request_key("fake-model", "blind", 1, body) != request_key("fake-model", "blind", 2, body)


def test_a_corrupt_cache_entry_is_a_miss(tmp_path: Path):
    cache = ResponseCache(str(tmp_path))
    with FakeLLMServer() as server:
        first = make_client(server, cache=cache).call(blind_question())
        Path(cache.path(first.request_hash)).write_text("{not json")
        again = make_client(server, cache=cache).call(blind_question())
        assert server.request_count == 2
    assert again.ok and not again.cache_hit


def test_transport_failures_are_not_cached(tmp_path: Path):
    cache = ResponseCache(str(tmp_path))
    with FakeLLMServer(faults=[Fault("server_error", nth=1)]) as server:
        assert not make_client(server, cache=cache, max_retries=0).call(blind_question()).ok
        assert make_client(server, cache=cache, max_retries=0).call(blind_question()).ok
        assert server.request_count == 2


def test_deterministic_failures_are_cached_with_their_outcome_and_never_sent_again(tmp_path: Path):
    cache = ResponseCache(str(tmp_path))
    with FakeLLMServer(faults=[Fault("schema_invalid", pattern="jacket", times=2)]) as server:
        first = make_client(server, cache=cache).call(blind_question())
        assert server.request_count == 2  # the request and its repair
        again = make_client(server, cache=cache).call(blind_question())
        assert server.request_count == 2
    assert not first.ok and first.deterministic and (first.error_class, first.sent.repairs) == ("ValidationError", 1)
    assert not again.ok and again.cache_hit
    assert (again.error_class, again.message, again.attempts, again.usage) == (
        first.error_class, first.message, first.attempts, first.usage)


def test_identical_requests_in_flight_are_sent_once():
    with FakeLLMServer(latency_s=0.3) as server:
        outcomes = make_client(server, concurrency=8).map([blind_question()] * 5 + [blind_question("Other?")])
        assert server.request_count == 2
    assert all(o.ok for o in outcomes)
    assert sum(not o.cache_hit for o in outcomes[:5]) == 1  # one sent, four shared its answer
    assert all(o.value == outcomes[0].value and o.item_id == "item:Which colour is the jacket?" for o in outcomes[:5])


def test_counters_are_http_retries_and_repair_requests():
    faults = [Fault("server_error", nth=1), Fault("rate_limit", nth=2), Fault("schema_invalid", nth=3)]
    with FakeLLMServer(faults=faults) as server:
        result = make_client(server).call(blind_question())
        assert server.request_count == 4
    assert result.ok and result.repaired
    assert (result.sent.requests, result.sent.retries, result.sent.repairs) == (4, 2, 1)
    with FakeLLMServer() as server:
        clean = make_client(server).call(blind_question())
    assert (clean.sent.requests, clean.sent.retries, clean.sent.repairs) == (1, 0, 0)


def test_map_keeps_order_and_bounds_requests_in_flight():
    requests = [blind_question(f"Question number {i}?") for i in range(12)]
    with FakeLLMServer(latency_s=0.1) as server:
        outcomes = make_client(server, concurrency=3).map(requests)
    assert [o.item_id for o in outcomes] == [r.item_id for r in requests]
    assert all(o.ok for o in outcomes)
    assert 2 <= server.max_in_flight <= 3


def test_the_api_key_never_appears_in_results_cache_reprs_or_logs(tmp_path: Path, caplog):
    caplog.set_level(logging.DEBUG)
    config = AnnotatorConfig(cache_dir=str(tmp_path), backoff_base_s=0.0, max_retries=1)
    with FakeLLMServer(api_key=SECRET, faults=[Fault("rate_limit", nth=1)]) as server:
        config = config.model_copy(update={"base_url": server.base_url})
        client = LLMClient.from_config(config, "blind", env={"OPENAI_API_KEY": SECRET})
        good = client.call(blind_question())
        bad = LLMClient.from_config(config, "blind", env={"OPENAI_API_KEY": SECRET + "x"}).call(blind_question("?"))
    assert good.ok and not bad.ok
    cached = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    seen = [repr(client), repr(client.endpoint), repr(config), config.model_dump_json(), repr(good), repr(bad),
            bad.message, cached, caplog.text]
    assert cached and caplog.text
    assert not [text for text in seen if SECRET in text]


def test_retry_after_header_forms():
    assert _retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert _retry_after_s({"retry-after": "3"}) == 3.0
    assert _retry_after_s({}) is None
    assert _retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 0  # a past date: retry now
