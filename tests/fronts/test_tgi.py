"""TGI's API with TGI's own clients: `text_generation` (Client, AsyncClient) and
huggingface_hub's InferenceClient (text_generation, chat_completion, feature_extraction), on
the tiny GGUF models; TGI's error shapes; the routes TGI shares with other fronts."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import text_generation
from huggingface_hub import (
    AsyncInferenceClient,
    ChatCompletionInputJSONSchema,
    ChatCompletionInputResponseFormatJSONSchema,
    InferenceClient,
)
from huggingface_hub import errors as hub_errors
from text_generation.types import Grammar, GrammarType

from tests.llm_models import tiny_embedding, tiny_gguf
from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def tgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with one text generator (`tiny`) and one embedding model, as TGI users run
    one model: no request names its model."""
    if importlib.util.find_spec("llama_cpp") is None:  # importing it leaks /dev/null handles
        pytest.skip("llama-cpp-python is not installed")
    repo = tmp_path_factory.mktemp("tgi-repo")
    tiny_gguf(repo / "tiny.gguf")
    tiny_embedding(repo / "tiny_embed")
    log = tmp_path_factory.mktemp("tgi-logs") / "server.log"
    with ServerProcess(str(repo), log_path=log) as process:
        yield process.url


def test_generate_with_details(tgi: str) -> None:
    client = text_generation.Client(tgi)
    reply = client.generate("hello world", max_new_tokens=6, decoder_input_details=True)
    details = reply.details
    assert details.generated_tokens == len(details.tokens) == 6
    assert details.finish_reason.value == "length" and details.seed is None  # greedy
    assert "".join(t.text for t in details.tokens) == reply.generated_text
    assert all(t.logprob is not None and t.logprob <= 0 for t in details.tokens)
    prompt = httpx.post(f"{tgi}/tokenize", json={"inputs": "hello world"}).json()
    assert [t.id for t in details.prefill] == [t["id"] for t in prompt]
    assert details.prefill[0].logprob is None and details.prefill[1].logprob is not None
    again = client.generate("hello world", max_new_tokens=6)
    assert again.generated_text == reply.generated_text  # greedy is deterministic


def test_stream_matches_generate(tgi: str) -> None:
    client = text_generation.Client(tgi)
    whole = client.generate("the red model", max_new_tokens=5).generated_text
    events = list(client.generate_stream("the red model", max_new_tokens=5))
    assert [e.token.text for e in events] and "".join(e.token.text for e in events) == whole
    assert all(e.generated_text is None for e in events[:-1])
    assert events[-1].generated_text == whole
    assert events[-1].details is not None and events[-1].details.generated_tokens == 5


def test_stream_with_top_tokens_and_full_text(tgi: str) -> None:
    parameters = {"max_new_tokens": 3, "top_n_tokens": 2, "return_full_text": True}
    body = {"inputs": "hello", "parameters": parameters}
    with httpx.stream("POST", f"{tgi}/generate_stream", json=body) as reply:
        events = [json.loads(line[5:]) for line in reply.iter_lines() if line.startswith("data:")]
    assert [len(e["top_tokens"]) for e in events] == [2, 2, 2]
    text = "".join(e["token"]["text"] for e in events)
    assert events[-1]["generated_text"] == "hello" + text and events[-1]["details"] is None


def test_seeded_sampling_reproduces(tgi: str) -> None:
    client = text_generation.AsyncClient(tgi)

    async def twice() -> list[text_generation.types.Response]:
        ask = {"temperature": 1.5, "top_k": 50, "typical_p": 0.95, "max_new_tokens": 8}
        return list(
            await asyncio.gather(
                client.generate("blue green", seed=7, **ask),
                client.generate("blue green", seed=7, **ask),
            )
        )

    first, second = asyncio.run(twice())
    assert first.generated_text == second.generated_text
    assert first.details.seed == 7


def test_async_stream_and_stop_sequence(tgi: str) -> None:
    client = text_generation.AsyncClient(tgi)

    async def stream(stop: list[str]) -> list[text_generation.types.StreamResponse]:
        return [
            event
            async for event in client.generate_stream(
                "hello", max_new_tokens=10, stop_sequences=stop
            )
        ]

    free = asyncio.run(stream([]))
    stop = free[3].token.text
    stopped = asyncio.run(stream([stop]))
    last = stopped[-1]
    assert last.generated_text is not None and last.generated_text.endswith(stop)
    assert last.details is not None and last.details.finish_reason.value == "stop_sequence"
    assert len(stopped) < len(free)


def test_grammars(tgi: str) -> None:
    client = text_generation.Client(tgi)
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    as_json = client.generate(
        "json", max_new_tokens=40, grammar=Grammar(type=GrammarType.Json, value=schema)
    )
    assert json.loads(as_json.generated_text) in ({"ok": True}, {"ok": False})
    pattern = r"[0-9]{3}-(yes|no)"
    as_regex = client.generate(
        "code", max_new_tokens=20, grammar=Grammar(type=GrammarType.Regex, value=pattern)
    )
    assert re.fullmatch(pattern, as_regex.generated_text)
    assert as_regex.details.finish_reason.value == "eos_token"
    with pytest.raises(text_generation.errors.ValidationError, match="lookarounds"):
        client.generate("x", grammar=Grammar(type=GrammarType.Regex, value="a(?=b)"))


def test_best_of_and_top_tokens(tgi: str) -> None:
    reply = httpx.post(
        f"{tgi}/generate",
        json={
            "inputs": "hello",
            "parameters": {
                "max_new_tokens": 4,
                "do_sample": True,
                "best_of": 2,
                "top_n_tokens": 2,
                "details": True,
                "return_full_text": True,
            },
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    details = body["details"]
    assert body["generated_text"].startswith("hello")
    assert len(details["best_of_sequences"]) == 1
    assert [len(top) for top in details["top_tokens"]] == [2] * details["generated_tokens"]
    assert reply.headers["x-generated-tokens"] == str(details["generated_tokens"])


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"max_new_tokens": 5000}, "`max_new_tokens` must be <= 4096"),
        ({"watermark": True}, "`watermark` is not supported"),
        ({"best_of": 2}, "you must use sampling"),
        ({"nucleus": 0.5}, "unknown parameters nucleus"),
        ({"grammar": {"type": "ebnf", "value": "x"}}, "`grammar` must be"),
    ],
)
def test_bad_parameters_are_tgi_validation_errors(
    tgi: str, parameters: dict[str, object], message: str
) -> None:
    reply = httpx.post(f"{tgi}/generate", json={"inputs": "hi", "parameters": parameters})
    assert reply.status_code == 422
    body = reply.json()
    assert body["error_type"] == "validation" and message in body["error"], body


def test_text_generation_client_raises_its_own_errors(tgi: str) -> None:
    client = text_generation.Client(tgi)
    with pytest.raises(text_generation.errors.ValidationError, match="max_new_tokens"):
        client.generate("hi", max_new_tokens=100_000)
    with pytest.raises(text_generation.errors.ValidationError, match="max_new_tokens"):
        list(client.generate_stream("hi", max_new_tokens=100_000))


def test_inference_client(tgi: str) -> None:
    client = InferenceClient(tgi)
    text = client.text_generation("hello world", max_new_tokens=5)
    streamed = "".join(client.text_generation("hello world", max_new_tokens=5, stream=True))
    assert text and streamed == text
    details = client.text_generation("hello world", max_new_tokens=5, details=True)
    assert details.generated_text == text and details.details is not None
    assert details.details.generated_tokens == 5
    events = list(
        client.text_generation("hello world", max_new_tokens=3, details=True, stream=True)
    )
    assert events[-1].generated_text == "".join(e.token.text for e in events)
    with pytest.raises(hub_errors.ValidationError, match="watermark"):
        client.text_generation("hello", watermark=True)

    async def stream() -> list[str]:
        async with AsyncInferenceClient(tgi) as aclient:
            tokens = await aclient.text_generation("hello world", max_new_tokens=5, stream=True)
            return [token async for token in tokens]

    assert "".join(asyncio.run(stream())) == text


def test_inference_client_chat_and_embeddings(tgi: str) -> None:
    client = InferenceClient(tgi)
    chat = client.chat_completion([{"role": "user", "content": "hi"}], max_tokens=4)
    assert chat.model == "tiny" and chat.choices[0].message.content
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
    }
    shaped = client.chat_completion(  # sent as TGI's {"type": "json_object", "value": schema}
        [{"role": "user", "content": "json"}],
        max_tokens=40,
        response_format=ChatCompletionInputResponseFormatJSONSchema(
            type="json_schema", json_schema=ChatCompletionInputJSONSchema(name="x", schema=schema)
        ),
    )
    assert isinstance(json.loads(shaped.choices[0].message.content or "")["ok"], bool)
    # a generator is loaded too, so `/` generates unless the embedding model is named; TEI's
    # `/embed` only embeds
    vector = InferenceClient(f"{tgi}/embed").feature_extraction("hello world")
    assert isinstance(vector, np.ndarray) and vector.shape == (1, 64)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    named = InferenceClient(tgi, headers={"X-Modelyard-Model": "tiny_embed"})
    np.testing.assert_allclose(named.feature_extraction("hello world"), vector, rtol=1e-5)
    asked = client.feature_extraction("hello world", normalize=True)  # an embedding parameter
    np.testing.assert_allclose(asked, vector, rtol=1e-5)


def test_embeddings_at_the_root(tgi: str) -> None:
    both = httpx.post(f"{tgi}/", json={"inputs": ["hello", "world"]})
    assert both.status_code == 200 and np.array(both.json()).shape == (2, 64)
    refused = httpx.post(f"{tgi}/embed", json={"inputs": "x", "normalize": False})
    assert refused.status_code == 422 and refused.json()["error_type"] == "validation"
    assert "`normalize` False is not supported" in refused.json()["error"]


def test_text_generation_client_chat_names_the_model_tgi(tgi: str) -> None:
    reply = text_generation.Client(tgi).chat([{"role": "user", "content": "hi"}], max_tokens=3)
    assert reply.model == "tiny" and reply.choices[0].message.content


def test_info_tokenize_and_shared_routes(tgi: str) -> None:
    info = httpx.get(f"{tgi}/info").json()
    assert info["model_id"] == "tiny" and info["max_total_tokens"] == 4096
    assert info["max_input_tokens"] == 4095 and info["router"] == "modelyard"
    tokens = httpx.post(f"{tgi}/tokenize", json={"inputs": "hello world"}).json()
    assert [t["text"] for t in tokens[1:]] == [" hello", " world"]
    assert tokens[-1]["stop"] == len(" hello world")
    vllm = httpx.post(f"{tgi}/tokenize", json={"prompt": "hello world"}).json()  # vLLM's
    assert vllm["tokens"] == [t["id"] for t in tokens]
    assert httpx.get(f"{tgi}/").text == "Ollama is running"
    assert httpx.get(f"{tgi}/health").status_code == 200
    hub = InferenceClient(tgi, provider="hf-inference")  # its info and health need it
    assert hub.get_endpoint_info()["model_id"] == "tiny" and hub.health_check()


def test_compat_route_and_truncate(tgi: str) -> None:
    body = {
        "inputs": "the of and to in is that it was",
        "parameters": {"max_new_tokens": 2, "truncate": 3, "decoder_input_details": True},
    }
    reply = httpx.post(f"{tgi}/", json=body)
    assert reply.status_code == 200
    [answer] = reply.json()  # TGI's compat route answers a list
    assert len(answer["details"]["prefill"]) == 3
    streamed = httpx.post(f"{tgi}/", json={**body, "stream": True, "parameters": {}})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.startswith("data:")


def test_several_generators_need_a_name(llm_server: ServerProcess) -> None:
    url = llm_server.url
    reply = httpx.post(f"{url}/generate", json={"inputs": "hi"})
    assert reply.status_code == 422 and "X-Modelyard-Model header" in reply.json()["error"]
    named = text_generation.Client(url, headers={"X-Modelyard-Model": "tiny_small"})
    assert named.generate("hi", max_new_tokens=2).details.generated_tokens == 2
    chat = InferenceClient(url).chat_completion(
        [{"role": "user", "content": "hi"}], model="tiny_small", max_tokens=2
    )
    assert chat.model == "tiny_small"
    assert "overloaded" in asyncio.run(_burst(url, 8))
    missing = httpx.post(f"{url}/generate", json={"inputs": "hi", "model": "nope"})
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"


async def _burst(url: str, count: int) -> list[str]:
    """tiny_small has 2 slots and a queue of 2: some of 8 concurrent requests are refused."""
    client = text_generation.AsyncClient(url, headers={"X-Modelyard-Model": "tiny_small"})

    async def one() -> str:
        try:
            await client.generate("hello", max_new_tokens=400)
        except text_generation.errors.OverloadedError:
            return "overloaded"
        return "ok"

    results = await asyncio.gather(*(one() for _ in range(count)))
    assert "ok" in results
    return list(results)


def test_tgi_model_option_picks_among_several(tmp_path: Path) -> None:
    from tests.llm_models import llm_repository

    repo = llm_repository(tmp_path / "repo")
    with ServerProcess(str(repo), "--tgi-model", "tiny_small") as server:
        assert httpx.get(f"{server.url}/info").json()["model_id"] == "tiny_small"
        reply = text_generation.Client(server.url).generate("hi", max_new_tokens=2)
        assert reply.details.generated_tokens == 2
        chat = InferenceClient(server.url).chat_completion(  # sends model "dummy"
            [{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert chat.model == "tiny_small"
