"""The API key from Google Secret Manager (`llm.api_key_secret`), read on the worker that uses
it, so the key never travels in pipeline options or the job graph."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from vidcorpus.config.llm import AnnotatorConfig, Endpoint


@lru_cache(maxsize=8)
def read_secret(version_name: str) -> str:
    """The secret's payload, e.g. for `projects/P/secrets/openai-key/versions/latest`."""
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    return client.access_secret_version(name=version_name).payload.data.decode("utf-8").strip()


def with_key(endpoint: Endpoint, config: AnnotatorConfig) -> Endpoint:
    """The endpoint with its key: from the worker's environment, else from `llm.api_key_secret`."""
    if endpoint.api_key is None and config.api_key_secret:
        return replace(endpoint, api_key=read_secret(config.api_key_secret))
    return endpoint
