"""OpenAI and Ollama bodies fuzzed against the tiny LLM and embedding models. Long generations
are cut to a few tokens (the values that break readers, negatives and huge ones, stay)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies
from tests.fuzz.oracle import CASES, FUZZ, check_answer
from tests.server_process import ServerProcess

ROUTES = {
    "/v1/chat/completions": strategies.chat_body,
    "/v1/completions": strategies.completion_body,
    "/v1/embeddings": strategies.embedding_body,
    "/tokenize": strategies.tokenize_body,
    "/detokenize": strategies.tokenize_body,
    "/api/generate": strategies.generate_body,
    "/api/chat": strategies.ollama_chat_body,
    "/api/embed": strategies.embed_body,
    "/api/embeddings": strategies.embed_body,
    "/api/show": strategies.show_body,
}


def _front(path: str) -> str:
    return "Ollama" if path.startswith("/api/") else "OpenAI"


def _short(body: Any) -> Any:
    """At most 8 new tokens where a body asks for a plausible number or none."""
    if not isinstance(body, dict):
        return body
    for holder, key in ((body, "max_tokens"), (body.get("options"), "num_predict")):
        if isinstance(holder, dict):
            value = holder.get(key)
            if value is None or (isinstance(value, int) and 8 < value < 2**31):
                holder[key] = 8
    return body


@pytest.mark.parametrize("path", list(ROUTES))
def test_bodies(fuzzed: ServerProcess, path: str) -> None:
    """CASES per front: each front's five routes share them."""

    @settings(FUZZ, max_examples=max(8, CASES // 5))
    @given(body=ROUTES[path].map(_short))
    def check(body: Any) -> None:
        reply = httpx.post(fuzzed.url + path, content=json.dumps(body).encode(), timeout=10)
        check_answer(reply, body, _front(path))

    check()


@FUZZ
@given(path=st.sampled_from(list(ROUTES)), raw=st.binary(max_size=100))
def test_bytes_that_are_not_json(fuzzed: ServerProcess, path: str, raw: bytes) -> None:
    check_answer(httpx.post(fuzzed.url + path, content=raw, timeout=10), raw, _front(path))
