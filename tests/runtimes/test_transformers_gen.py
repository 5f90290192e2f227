"""The transformers runtime: a tiny Llama built from a config with random weights and a
byte-level BPE tokenizer trained here (no downloads; tests/hf_models.py), saved with
`save_pretrained` into a repository as a bare Hugging Face folder, served by the real server
through the openai client; and its backend against the model's own forward pass."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.hf_models import TINY_CONTEXT, build_tiny_llm, library_greedy
from tests.server_process import ServerProcess

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PROMPT = "Hello, world"
N_CTX = TINY_CONTEXT  # the runtime's default n_ctx for the tiny model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hf-repo")
    build_tiny_llm(repo / "tiny")
    return repo / "tiny"


@pytest.fixture(scope="module")
def server(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("hf-logs") / "server.log"
    with ServerProcess(str(tiny.parent), log_path=log) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def complete(client: openai.OpenAI, **options: Any) -> Any:
    return client.completions.create(model="tiny", **{"prompt": PROMPT, **options})


# ---- served -----------------------------------------------------------------------------------


def test_a_hugging_face_folder_is_served_by_transformers(server: ServerProcess) -> None:
    metadata = httpx.get(f"{server.url}/v2/models/tiny").json()
    assert metadata["platform"] == "transformers"
    assert "Hugging Face" in metadata["parameters"]["reason.runtime"]


def test_greedy_output_equals_transformers_generate(tiny: Path, client: openai.OpenAI) -> None:
    reply = complete(client, max_tokens=12, temperature=0)
    assert reply.choices[0].text == library_greedy(tiny, PROMPT, 12)
    assert reply.usage is not None and reply.usage.completion_tokens == 12


def test_chat_and_its_stream_agree(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "How are you?"}]
    whole = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=10, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=10, temperature=0, stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert whole.usage is not None and whole.usage.prompt_tokens > 5  # the template's tokens


def test_a_seed_reproduces_a_sample(client: openai.OpenAI) -> None:
    options: dict[str, Any] = {"max_tokens": 16, "temperature": 1.0, "extra_body": {"top_k": 50}}
    first = complete(client, seed=7, **options).choices[0].text
    assert complete(client, seed=7, **options).choices[0].text == first
    others = {complete(client, seed=s, **options).choices[0].text for s in (8, 9)}
    assert others != {first}


def test_logit_bias_and_penalties_steer_the_sample(client: openai.OpenAI) -> None:
    forced = complete(client, max_tokens=5, temperature=0, logit_bias={"300": 100})
    text = forced.choices[0].text  # token 300, five times
    assert text and text == text[: len(text) // 5] * 5
    # every warper and penalty on a seeded sample: the same seed, the same text
    options: dict[str, Any] = {
        "max_tokens": 12,
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": 3,
        "presence_penalty": 1.5,
        "frequency_penalty": 0.5,
        "extra_body": {"min_p": 0.01, "typical_p": 0.95, "repetition_penalty": 1.3},
    }
    first = complete(client, **options).choices[0].text
    assert first and complete(client, **options).choices[0].text == first


def test_a_stop_string_ends_the_text_before_it(client: openai.OpenAI) -> None:
    full = complete(client, max_tokens=12, temperature=0).choices[0].text
    stop = full[len(full) // 2 :][:3]
    reply = complete(client, max_tokens=12, temperature=0, stop=[stop])
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    assert reply.choices[0].text == full[: full.index(stop)]


def test_logprobs_come_with_each_token(client: openai.OpenAI) -> None:
    reply = complete(client, max_tokens=4, temperature=0, logprobs=3)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.token_logprobs and logprobs.top_logprobs
    assert len(logprobs.token_logprobs) == 4
    for chosen, top in zip(logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert chosen is not None and chosen <= 0.0
        # keyed by text: two byte tokens that both render as U+FFFD make one key
        assert 1 <= len(top) <= 3 and chosen >= max(top.values()) - 1e-6  # greedy: the best


def _steps(server: ServerProcess) -> tuple[float, float]:
    """vllm:iteration_tokens_total's count (engine steps = forward passes) and sum (rows)."""
    text = httpx.get(f"{server.url}/metrics").text
    found = {}
    for part in ("count", "sum"):
        match = re.search(
            rf'^vllm:iteration_tokens_total_{part}\{{[^}}]*"tiny"[^}}]*\}} (\S+)', text, re.M
        )
        found[part] = float(match.group(1)) if match else 0.0
    return found["count"], found["sum"]


def test_concurrent_streams_share_each_forward_pass(
    server: ServerProcess, client: openai.OpenAI
) -> None:
    """Four streams of 48 tokens: each step carries a token of every running stream, so the
    engine runs far fewer forward passes than the 192 tokens it writes."""
    streams, n = 4, 48
    steps_before, rows_before = _steps(server)
    barrier = threading.Barrier(streams)
    counts: list[int] = []

    def stream(i: int) -> None:
        barrier.wait()
        chunks = client.completions.create(
            model="tiny",
            prompt=f"{PROMPT} {i}",
            max_tokens=n,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        counts.append(sum(1 for c in chunks if c.choices and c.choices[0].text))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    steps = _steps(server)[0] - steps_before
    rows = _steps(server)[1] - rows_before
    assert len(counts) == streams
    assert rows >= streams * n  # every generated token was a row of some step
    assert steps < streams * n / 2, (steps, rows)


def test_live_requests_share_a_prompt_prefix(tiny: Path, client: openai.OpenAI) -> None:
    """Two requests that start alike, sent together: one takes the other's computed prefix
    (cached_tokens) and both write what the library writes for their prompts."""
    prefix = "The lazy dog jumps over the quick brown fox. " * 6
    prompts = [prefix + "How are you?", prefix + "Hello, world!"]
    barrier = threading.Barrier(len(prompts))
    replies: dict[str, tuple[str, int]] = {}

    def ask(prompt: str) -> None:
        barrier.wait()
        reply = complete(client, prompt=prompt, max_tokens=8, temperature=0)
        usage = reply.usage
        assert usage is not None and usage.prompt_tokens_details is not None
        replies[prompt] = (reply.choices[0].text, usage.prompt_tokens_details.cached_tokens or 0)

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(cached for _, cached in replies.values()) >= 16
    for prompt, (text, _) in replies.items():
        assert text == library_greedy(tiny, prompt, 8)


def test_structured_output_follows_a_schema_and_a_regex(client: openai.OpenAI) -> None:
    """Random weights write gibberish; llguidance's mask makes it JSON of the schema."""
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Yes or no?"}],
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)
    chat: Any = [{"role": "user", "content": "A date?"}]
    regex: Any = {"type": "regex", "value": "20[0-9]{2}-[01][0-9]"}  # TGI's, vLLM's
    dated = client.chat.completions.create(
        model="tiny", messages=chat, max_tokens=20, temperature=0.9, seed=1, response_format=regex
    )
    assert re.fullmatch(r"20[0-9]{2}-[01][0-9]", dated.choices[0].message.content or "")


def test_errors_are_400s_that_say_what_to_fix(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="tokens"):
        complete(client, prompt="fox " * N_CTX, max_tokens=4)
    broken: Any = {"type": "regex", "value": "(unclosed"}
    with pytest.raises(openai.BadRequestError, match="regex"):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], response_format=broken
        )
    tool: Any = {"type": "function", "function": {"name": "f", "parameters": {}}}
    with pytest.raises(openai.BadRequestError, match="tool calls"):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[tool]
        )


# ---- the backend alone -------------------------------------------------------------------------


def test_one_forward_for_two_slots_matches_the_model_alone(tiny: Path) -> None:
    from modelyard.runtimes.transformers_backend import TransformersBackend

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny).eval()
    served = transformers.AutoModelForCausalLM.from_pretrained(tiny).eval()
    backend = TransformersBackend(  # switches `served` to its own attention function
        served, n_slots=3, n_ctx=32, n_batch=64, end_tokens={2}, piece=lambda t: b""
    )
    a, b = [5, 6, 7, 8], [9, 10, 11]
    rows = [(0, i, t, i == len(a) - 1) for i, t in enumerate(a)]
    rows += [(2, i, t, i == len(b) - 1) for i, t in enumerate(b)]
    backend.decode(rows)
    with torch.inference_mode():
        alone_a = model(input_ids=torch.tensor([[*a, 12]])).logits[0]
        alone_b = model(input_ids=torch.tensor([[*b, 13]])).logits[0]
    assert torch.allclose(backend.row_logits(3), alone_a[3], atol=1e-5)
    assert torch.allclose(backend.row_logits(6), alone_b[2], atol=1e-5)
    # slot 1 takes slot 0's first three tokens without reading them; slot 0 goes on
    assert backend.share(0, 1, 3) == 3
    backend.decode([(0, 4, 12, True), (2, 3, 13, True), (1, 3, 12, True)])
    with torch.inference_mode():
        shared = model(input_ids=torch.tensor([[*a[:3], 12]])).logits[0]
    assert torch.allclose(backend.row_logits(0), alone_a[4], atol=1e-5)
    assert torch.allclose(backend.row_logits(1), alone_b[3], atol=1e-5)
    assert torch.allclose(backend.row_logits(2), shared[3], atol=1e-5)
    assert backend.forwards == 2
