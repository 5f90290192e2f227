"""Bad requests get OpenAI-shaped errors with the right status."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def client(llm_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    assert "nope" in body["message"]


@pytest.mark.parametrize(
    "extra",
    [
        {"messages": []},
        {"temperature": 5},
        {"top_p": 0},
        {"n": 0},
        {"max_tokens": 0},
        {"response_format": {"type": "regex"}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        {"guided_json": {"type": "object"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
        {"stream_options": {"include_usage": True}},
    ],
)
def test_bad_chat_requests_are_400(llm_server: ServerProcess, extra: dict[str, object]) -> None:
    body = {"model": "tiny", "messages": MESSAGES, **extra}
    reply = httpx.post(f"{llm_server.url}/v1/chat/completions", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_prompt_longer_than_the_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny_small", prompt="hello " * 600, max_tokens=4)
    assert "512" in str(caught.value)


def test_embedding_model_cannot_chat(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny_embed", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="tiny", input="hi")


def test_malformed_json_is_400(llm_server: ServerProcess) -> None:
    reply = httpx.post(f"{llm_server.url}/v1/completions", content=b"{not json")
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_full_queue_is_429(llm_server: ServerProcess) -> None:
    """tiny_small has 2 slots and a queue of 2: some of 8 concurrent requests are refused."""
    assert "429" in asyncio.run(_burst(llm_server.url, 8))


async def _burst(url: str, count: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

    async def one() -> str:
        try:
            await client.completions.create(
                model="tiny_small", prompt="hello", max_tokens=400, extra_body={"ignore_eos": True}
            )
        except openai.RateLimitError as exc:
            assert exc.status_code == 429
            assert exc.response.headers["retry-after"] == "1"
            return "429"
        return "ok"

    results = await asyncio.gather(*(one() for _ in range(count)))
    await client.close()
    assert "ok" in results
    return list(results)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405)],
)
def test_routing_errors_are_openai_shaped(
    llm_server: ServerProcess, method: str, path: str, status: int
) -> None:
    reply = httpx.request(method, f"{llm_server.url}{path}")
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["message"] and error["type"] in ("not_found_error", "invalid_request_error")
