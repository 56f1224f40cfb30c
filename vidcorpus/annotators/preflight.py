"""Before a build starts: is each LLM endpoint reachable, is the key accepted, is the model served?

One `GET /models` per distinct endpoint, with a short timeout and no retries. A problem raises
`LLMUnavailable`, whose message is one paragraph (URL, model, what to fix), so a bad endpoint
fails the build in seconds instead of after every video's retries. An endpoint that does not
list models (some proxies) passes: the first real request will tell.
"""

from __future__ import annotations

from collections.abc import Mapping

import openai

from vidcorpus.annotators.client import OPENAI_BASE_URL
from vidcorpus.annotators.secrets import with_key
from vidcorpus.config.llm import ANNOTATORS, AnnotatorConfig, Endpoint, resolve_endpoint

PREFLIGHT_TIMEOUT_S = 10.0


class LLMUnavailable(ValueError):
    """The LLM endpoint cannot serve this build; the message says what to fix."""


def check_llm(config: AnnotatorConfig, env: Mapping[str, str] | None = None,
              timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    endpoints = {}
    for name in ANNOTATORS:
        endpoint = resolve_endpoint(config, name, env)
        if endpoint is not None:
            endpoints.setdefault((endpoint.base_url, endpoint.api_key, endpoint.model), (name, endpoint))
    for name, endpoint in endpoints.values():
        check_endpoint(with_key(endpoint, config), config, name, timeout_s)


def check_asr(endpoint: Endpoint, config: AnnotatorConfig, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """The same checks for the speech-recognition endpoint (`asr.*`)."""
    check_endpoint(with_key(endpoint, config), config, "asr", timeout_s, section="asr")


def check_endpoint(endpoint: Endpoint, config: AnnotatorConfig, name: str, timeout_s: float,
                   section: str = "llm") -> None:
    url = endpoint.base_url or OPENAI_BASE_URL
    what = "ASR" if section == "asr" else "LLM"
    where = f"The {what} endpoint {url} (model {endpoint.model!r}, {'stage' if section == 'asr' else 'annotator'} {name})"
    key_source = f"the environment variable {config.api_key_env}" + (
        f" or the secret {config.api_key_secret}" if config.api_key_secret else "")
    client = openai.OpenAI(api_key=endpoint.api_key or "unused", base_url=url, timeout=timeout_s, max_retries=0)
    try:
        served = [m.id for m in client.models.list()]
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise LLMUnavailable(
            f"{where} refused the API key (HTTP {exc.status_code}). Set a valid key in {key_source} "
            f"(workers read the same), or point llm.base_url at an endpoint this key may use.") from None
    except openai.APIConnectionError as exc:
        raise LLMUnavailable(
            f"{where} cannot be reached ({type(exc).__name__}: {_redacted(exc, endpoint)}). Start the server or "
            f"fix {section}.base_url / OPENAI_BASE_URL; to build without "
            f"{'transcripts' if section == 'asr' else 'annotations'} set {section}.enabled=false.") from None
    except openai.APIStatusError:
        return  # no model listing here (404, 405, 501): the first request will tell
    finally:
        client.close()
    if served and endpoint.model not in served:
        listed = ", ".join(sorted(served)[:20])
        raise LLMUnavailable(
            f"{where} does not serve that model; it serves: {listed}. Set "
            f"{'asr.model' if section == 'asr' else f'llm.model (or llm.{name}.model)'} to one of them.")


def _redacted(exc: Exception, endpoint: Endpoint) -> str:
    text = str(exc)
    return text.replace(endpoint.api_key, "***") if endpoint.api_key else text
