"""Models on demand through the Ollama API: three models, a memory budget that fits two; LRU
eviction, reload on demand (its time in load_duration), and a model serving a stream is never
evicted. Then four chat streams on one model share engine steps, and /metrics shows them."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator

import httpx
import ollama
import pytest

from modelyard.repository.residency import estimate_bytes
from modelyard.repository.scan import read_entry
from tests.server_process import ServerProcess

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

LONG = {"temperature": 0, "num_predict": 600, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pytest.importorskip("llama_cpp")
    from tests.llm_models import tiny_gguf

    repo = tmp_path_factory.mktemp("budget-repo")
    tiny_gguf(repo / "m1.gguf")
    for name in ("m2", "m3"):
        shutil.copy(repo / "m1.gguf", repo / f"{name}.gguf")
    source = read_entry(repo / "m1.gguf")
    assert source is not None
    each = estimate_bytes(source.config, repo / "m1.gguf")
    log = tmp_path_factory.mktemp("budget-logs") / "server.log"
    with ServerProcess(
        str(repo),
        "--model-control-mode",
        "ondemand",
        "--memory-budget",
        str(int(each * 2.5)),
        log_path=log,
    ) as process:
        yield process


def _loaded(client: ollama.Client) -> set[str]:
    return {(m.model or "").removesuffix(":latest") for m in client.ps().models}


def _touch(client: ollama.Client, name: str) -> ollama.ChatResponse:
    return client.chat(
        model=name, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 1}
    )


def test_lru_eviction_reload_and_a_streaming_model_stays(server: ServerProcess) -> None:
    with ollama.Client(host=server.url) as client:
        for name in ("m1", "m2"):
            assert _touch(client, name).load_duration
        assert _loaded(client) == {"m1", "m2"}
        _touch(client, "m1")  # m2 is now the least recently used
        _touch(client, "m3")
        assert _loaded(client) == {"m1", "m3"}
        again = _touch(client, "m2")  # loads again, evicting m1
        assert _loaded(client) == {"m3", "m2"}
        assert again.load_duration is not None and again.load_duration > 1e6  # a real load
        warm = _touch(client, "m2")
        assert warm.load_duration is not None and warm.load_duration < again.load_duration

        stream = client.chat(
            model="m3", messages=[{"role": "user", "content": "go"}], options=LONG, stream=True
        )
        first = next(stream)  # m3 is serving, and older than m2 once m2 is touched
        assert not first.done
        _touch(client, "m2")
        _touch(client, "m1")  # room for m1: m2 is evicted (idle), not m3 (busy, older)
        assert _loaded(client) == {"m3", "m1"}
        rest = list(stream)
        assert rest[-1].done and rest[-1].eval_count == LONG["num_predict"]


def _metric(url: str, name: str, model: str) -> float:
    pattern = re.compile(rf'^{re.escape(name)}\{{[^}}]*model_name="{model}"[^}}]*\}} (\S+)$')
    return sum(
        float(m.group(1))
        for line in httpx.get(f"{url}/metrics").text.splitlines()
        if (m := pattern.match(line))
    )


def test_four_chat_streams_share_engine_steps(server: ServerProcess) -> None:
    url, tokens = server.url, 200
    with ollama.Client(host=url) as client:
        _touch(client, "m1")
    steps = _metric(url, "vllm:iteration_tokens_total_count", "m1")
    started = threading.Barrier(5)
    counts: list[int] = []

    def stream(i: int) -> None:
        with ollama.Client(host=url) as own:
            parts = own.chat(
                model="m1",
                messages=[{"role": "user", "content": f"story {i}"}],
                options={**LONG, "num_predict": tokens},
                stream=True,
            )
            next(parts)
            started.wait(timeout=30)
            counts.append(sum(1 for _ in parts))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)
    running = _metric(url, "vllm:num_requests_running", "m1")
    for thread in threads:
        thread.join(60)
    assert len(counts) == 4
    assert running == 4  # all four in the engine at once, seen in /metrics
    decode_steps = _metric(url, "vllm:iteration_tokens_total_count", "m1") - steps
    # one after the other they would take 4 x tokens steps; together about tokens, plus the
    # steps a stream runs alone before the others arrive (more when the suite runs traced)
    assert decode_steps < 2 * tokens, decode_steps
