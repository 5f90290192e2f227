"""The official openai client against the real server on the tiny GGUF models."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import httpx
import openai
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def client(llm_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0)


def _create(client: openai.OpenAI, kwargs: dict[str, Any]) -> object:
    options: dict[str, Any] = {
        "model": "tiny",
        "temperature": 0,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello there"}],
    }
    options.update(kwargs)
    return client.chat.completions.create(**options)


def _chat(client: openai.OpenAI, **kwargs: Any) -> openai.types.chat.ChatCompletion:
    return cast(openai.types.chat.ChatCompletion, _create(client, kwargs))


def _chat_stream(
    client: openai.OpenAI, **kwargs: Any
) -> openai.Stream[openai.types.chat.ChatCompletionChunk]:
    """Like _chat, with stream=True."""
    return cast(
        openai.Stream[openai.types.chat.ChatCompletionChunk],
        _create(client, {"stream": True, **kwargs}),
    )


def test_models_lists_the_language_models(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert {"tiny", "tiny_small", "tiny_embed"} <= names
    assert client.models.retrieve("tiny").id == "tiny"


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = _chat(client, max_tokens=12, extra_body={"ignore_eos": True})
    choice = reply.choices[0]
    assert reply.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = _chat_stream(
        client,
        max_tokens=10,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10


def test_completion_streamed_and_not(client: openai.OpenAI) -> None:
    whole = client.completions.create(
        model="tiny",
        prompt="the model",
        max_tokens=8,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert whole.object == "text_completion"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 8
    parts = list(
        client.completions.create(
            model="tiny",
            prompt="the model",
            max_tokens=8,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text
    assert parts[-1].choices[0].finish_reason == "length"


def test_stop_string_ends_the_text_before_it(client: openai.OpenAI) -> None:
    prompt = "red blue green"
    full = (
        client.completions.create(
            model="tiny",
            prompt=prompt,
            max_tokens=40,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        .choices[0]
        .text
    )
    words = [m for m in re.finditer(r"[a-z]{3,}", full) if m.start() > 0]
    assert words, full
    stop = words[0].group()
    cut = client.completions.create(
        model="tiny",
        prompt=prompt,
        max_tokens=40,
        temperature=0,
        stop=[stop],
        extra_body={"ignore_eos": True},
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert cut.text == full[: full.index(stop)]


def test_seed_gives_the_same_text_twice(client: openai.OpenAI) -> None:
    texts = [
        _chat(client, temperature=1.0, seed=1234, max_tokens=20).choices[0].message.content
        for _ in range(2)
    ]
    assert texts[0] == texts[1]


def test_sampling_extras_are_accepted(client: openai.OpenAI) -> None:
    reply = _chat(
        client,
        temperature=0.8,
        top_p=0.9,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=7,
        extra_body={
            "top_k": 20,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "min_tokens": 5,
            "stop_token_ids": [2],
        },
    )
    assert reply.usage is not None and reply.usage.completion_tokens >= 5


def test_n_choices_and_logprobs(client: openai.OpenAI) -> None:
    reply = _chat(
        client,
        n=2,
        temperature=1.0,
        seed=3,
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
        extra_body={"ignore_eos": True},
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert len(choice.logprobs.content) == 6
        for item in choice.logprobs.content:
            assert item.logprob <= 0.0 and len(item.top_logprobs) == 3
    assert reply.usage is not None and reply.usage.completion_tokens == 12


def test_json_schema_output_parses_and_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green", "blue"]}},
        "required": ["ok", "color"],
    }
    reply = _chat(
        client,
        max_tokens=60,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    )
    value = json.loads(reply.choices[0].message.content or "")
    assert set(value) == {"ok", "color"}
    assert isinstance(value["ok"], bool) and value["color"] in ("red", "green", "blue")
    assert reply.choices[0].finish_reason == "stop"


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="tiny_embed", input=["hello world", "red blue"])
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [64, 64]
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)
    alone = client.embeddings.create(model="tiny_embed", input="hello world").data[0].embedding
    assert max(abs(a - b) for a, b in zip(alone, vectors[0], strict=True)) < 1e-4
    assert result.usage.prompt_tokens > 2


def test_tokenize_and_detokenize(llm_server: ServerProcess) -> None:
    tokens = httpx.post(
        f"{llm_server.url}/tokenize", json={"model": "tiny", "prompt": "hello world"}
    ).json()
    assert tokens["count"] == len(tokens["tokens"]) == 3
    text = httpx.post(
        f"{llm_server.url}/detokenize", json={"model": "tiny", "tokens": tokens["tokens"][1:]}
    ).json()
    assert text["prompt"].strip() == "hello world"


def test_llm_in_kserve_metadata_and_infer(llm_server: ServerProcess) -> None:
    meta = httpx.get(f"{llm_server.url}/v2/models/tiny").json()
    assert meta["platform"] == "llamacpp"
    assert [i["name"] for i in meta["inputs"]] == ["text_input", "sampling_parameters"]
    body = {
        "inputs": [
            {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["hello"]},
            {
                "name": "sampling_parameters",
                "shape": [1],
                "datatype": "BYTES",
                "data": ['{"max_tokens": 5, "temperature": 0}'],
            },
        ]
    }
    reply = httpx.post(f"{llm_server.url}/v2/models/tiny/infer", json=body).json()
    assert reply["outputs"][0]["name"] == "text_output"
    assert isinstance(reply["outputs"][0]["data"][0], str)
