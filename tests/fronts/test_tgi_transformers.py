"""TGI's API on a Transformers model, with TGI's own clients: `text_generation` (Client,
AsyncClient) and huggingface_hub's InferenceClient (text_generation, chat_completion), against
the tiny random-weight Llama folder (tests/hf_models.py) served by the real server —
generate, stream, details, stop, seeds, grammars and errors, as test_tgi.py checks them on
GGUF models."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
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

from tests.hf_models import TINY_CONTEXT, build_tiny_llm, library_greedy
from tests.server_process import ServerProcess

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PROMPT = "Hello, world"
#: importing torch and transformers takes a while on a busy machine
START_S = 180
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tgi-hf-repo") / "tiny")


@pytest.fixture(scope="module")
def tgi(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with the one Transformers model: TGI's clients name no model."""
    log = tmp_path_factory.mktemp("tgi-hf-logs") / "server.log"
    process = ServerProcess(str(tiny.parent), log_path=log)
    process.start(timeout=START_S)
    try:
        yield process.url
    finally:
        process.stop()


def test_generate_equals_the_library_with_details(tgi: str, tiny: Path) -> None:
    client = text_generation.Client(tgi)
    reply = client.generate(PROMPT, max_new_tokens=8, decoder_input_details=True)
    assert reply.generated_text == library_greedy(tiny, PROMPT, 8)
    details = reply.details
    assert details.generated_tokens == len(details.tokens) == 8
    assert details.finish_reason.value == "length" and details.seed is None  # greedy
    assert "".join(t.text for t in details.tokens) == reply.generated_text
    assert all(t.logprob is not None and t.logprob <= 0 for t in details.tokens)
    prompt = httpx.post(f"{tgi}/tokenize", json={"inputs": PROMPT}).json()
    assert [t.id for t in details.prefill] == [t["id"] for t in prompt]
    assert details.prefill[0].logprob is None and details.prefill[1].logprob is not None


def test_streams_match_generate(tgi: str) -> None:
    client = text_generation.Client(tgi)
    whole = client.generate(PROMPT, max_new_tokens=6).generated_text
    events = list(client.generate_stream(PROMPT, max_new_tokens=6))
    assert "".join(e.token.text for e in events) == whole
    assert all(e.generated_text is None for e in events[:-1])
    assert events[-1].generated_text == whole
    assert events[-1].details is not None and events[-1].details.generated_tokens == 6
    hub = InferenceClient(tgi)
    assert "".join(hub.text_generation(PROMPT, max_new_tokens=6, stream=True)) == whole

    async def async_stream() -> list[str]:
        async with AsyncInferenceClient(tgi) as aclient:
            tokens = await aclient.text_generation(PROMPT, max_new_tokens=6, stream=True)
            return [token async for token in tokens]

    assert "".join(asyncio.run(async_stream())) == whole


def test_details_top_tokens_and_full_text(tgi: str) -> None:
    ranked = text_generation.Client(tgi).generate(PROMPT, max_new_tokens=5, top_n_tokens=3)
    for token, top in zip(ranked.details.tokens, ranked.details.top_tokens or [], strict=True):
        assert len(top) == 3 and top[0].id == token.id  # greedy: the best one
    client = InferenceClient(tgi)
    text = client.text_generation(PROMPT, max_new_tokens=5)
    assert text == ranked.generated_text
    details = client.text_generation(PROMPT, max_new_tokens=5, details=True)
    assert details.generated_text == text and details.details is not None
    assert details.details.generated_tokens == 5
    events = list(client.text_generation(PROMPT, max_new_tokens=3, details=True, stream=True))
    assert events[-1].generated_text == "".join(e.token.text for e in events)
    full = client.text_generation(PROMPT, max_new_tokens=5, return_full_text=True)
    assert full == PROMPT + text


def test_a_stop_sequence_ends_the_text_with_it(tgi: str) -> None:
    client = text_generation.Client(tgi)
    free = client.generate(PROMPT, max_new_tokens=12)
    texts = [t.text for t in free.details.tokens]
    stop = next(t for t in texts[3:] if t.strip())  # a token of the free text, not the first
    stopped = client.generate(PROMPT, max_new_tokens=12, stop_sequences=[stop])
    assert stopped.details.finish_reason.value == "stop_sequence"
    assert stopped.generated_text.endswith(stop)
    assert free.generated_text.startswith(stopped.generated_text)
    hub = InferenceClient(tgi).text_generation(PROMPT, max_new_tokens=12, stop=[stop])
    assert hub == stopped.generated_text


def test_a_seed_reproduces_a_sample(tgi: str) -> None:
    client = text_generation.AsyncClient(tgi)
    ask: dict[str, Any] = {"temperature": 1.5, "top_k": 50, "top_p": 0.95, "max_new_tokens": 12}

    async def sample(seeds: list[int]) -> list[text_generation.types.Response]:
        return list(await asyncio.gather(*(client.generate(PROMPT, seed=s, **ask) for s in seeds)))

    first, again, *others = asyncio.run(sample([7, 7, 8, 9, 10]))
    assert first.generated_text == again.generated_text  # sent together, sampled apart
    assert first.details.seed == 7
    assert {o.generated_text for o in others} != {first.generated_text}
    drawn = text_generation.Client(tgi).generate(PROMPT, do_sample=True, max_new_tokens=4)
    assert drawn.details.seed is not None  # drawn and reported, as TGI does
    hub = InferenceClient(tgi).text_generation(PROMPT, seed=7, **ask)
    assert hub == first.generated_text


def test_grammars_shape_the_output(tgi: str) -> None:
    """Random weights write gibberish; llguidance's mask makes it JSON of the schema, or
    text the pattern matches."""
    client = text_generation.Client(tgi, timeout=120)  # the first grammar builds llguidance's
    as_json = client.generate(
        "json", max_new_tokens=40, grammar=Grammar(type=GrammarType.Json, value=SCHEMA)
    )
    jsonschema.validate(json.loads(as_json.generated_text), SCHEMA)
    pattern = r"[0-9]{3}-(yes|no)"
    as_regex = client.generate(
        "code", max_new_tokens=20, grammar=Grammar(type=GrammarType.Regex, value=pattern)
    )
    assert re.fullmatch(pattern, as_regex.generated_text)
    assert as_regex.details.finish_reason.value == "eos_token"
    chat = InferenceClient(tgi, timeout=120).chat_completion(
        [{"role": "user", "content": "Yes or no?"}],
        max_tokens=40,
        response_format=ChatCompletionInputResponseFormatJSONSchema(
            type="json_schema", json_schema=ChatCompletionInputJSONSchema(name="a", schema=SCHEMA)
        ),
    )
    jsonschema.validate(json.loads(chat.choices[0].message.content or ""), SCHEMA)


def test_chat_completion_streamed_and_not(tgi: str) -> None:
    client = InferenceClient(tgi)
    messages: Any = [{"role": "user", "content": "How are you?"}]
    whole = client.chat_completion(messages, max_tokens=8, temperature=0)
    assert whole.model == "tiny" and whole.choices[0].message.content
    chunks = list(client.chat_completion(messages, max_tokens=8, temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content


def test_info_and_tokenize_describe_the_transformers_model(tgi: str) -> None:
    info = httpx.get(f"{tgi}/info").json()
    assert info["model_id"] == "tiny" and info["max_total_tokens"] == TINY_CONTEXT
    assert info["max_input_tokens"] == TINY_CONTEXT - 1
    tokens = httpx.post(f"{tgi}/tokenize", json={"inputs": PROMPT}).json()
    assert "".join(t["text"] for t in tokens) == PROMPT  # the tiny tokenizer adds no BOS
    assert tokens[-1]["stop"] == len(PROMPT)
    assert InferenceClient(tgi, provider="hf-inference").get_endpoint_info()["model_id"] == "tiny"


def test_errors_are_tgi_errors_that_say_what_to_fix(tgi: str) -> None:
    client = text_generation.Client(tgi, timeout=60)
    with pytest.raises(text_generation.errors.ValidationError, match="max_new_tokens"):
        client.generate(PROMPT, max_new_tokens=TINY_CONTEXT + 1)
    with pytest.raises(text_generation.errors.ValidationError, match="tokens"):
        client.generate("fox " * TINY_CONTEXT, max_new_tokens=4)
    with pytest.raises(text_generation.errors.ValidationError, match="regex"):
        client.generate("x", grammar=Grammar(type=GrammarType.Regex, value="(unclosed"))
    with pytest.raises(text_generation.errors.ValidationError, match="temperature"):
        list(client.generate_stream(PROMPT, temperature=0.0))
    hub = InferenceClient(tgi)
    with pytest.raises(hub_errors.ValidationError, match="watermark"):
        hub.text_generation(PROMPT, watermark=True)
    tool: Any = {"type": "function", "function": {"name": "f", "parameters": {}}}
    with pytest.raises(hub_errors.HfHubHTTPError, match="tool calls"):
        hub.chat_completion([{"role": "user", "content": "hi"}], tools=[tool])
    # the server keeps serving
    assert client.generate(PROMPT, max_new_tokens=2).details.generated_tokens == 2
