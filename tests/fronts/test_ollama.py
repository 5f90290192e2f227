"""The official `ollama` client against the real server (ondemand mode, Ollama's second port)
on the tiny GGUF models."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import ollama
import pytest

from tests.server_process import ServerProcess, free_port

pytestmark = pytest.mark.timeout(60)

GREEDY = {"temperature": 0, "num_predict": 12, "ignore_eos": True}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp")
    from tests.llm_models import llm_repository

    return llm_repository(tmp_path_factory.mktemp("ollama-repo"))


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("ollama-logs") / "server.log"
    process = ServerProcess(
        str(repo),
        "--model-control-mode",
        "ondemand",
        "--ollama-port",
        str(free_port()),
        "--pull-from",  # the tests' own folders: paths elsewhere are refused
        str(tmp_path_factory.getbasetemp()),
        log_path=log,
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url) as client:
        yield client


def _loaded(client: ollama.Client) -> set[str]:
    return {m.model or "" for m in client.ps().models}


def _plausible_final(final: ollama.GenerateResponse | ollama.ChatResponse, tokens: int) -> None:
    assert final.done and final.done_reason == "length"
    assert final.eval_count == tokens
    assert final.prompt_eval_count is not None and final.prompt_eval_count > 3
    durations = [final.load_duration, final.prompt_eval_duration, final.eval_duration]
    assert all(d is not None and d > 0 for d in durations), durations
    assert final.total_duration is not None
    assert final.total_duration >= sum(d or 0 for d in durations)
    assert final.total_duration < 30e9  # nanoseconds, not seconds or microseconds


def test_root_version_and_ollama_port(server: ServerProcess) -> None:
    assert httpx.get(server.url).text == "Ollama is running"
    assert httpx.head(server.url).status_code == 200
    assert re.fullmatch(r"\d+\.\d+\.\d+", httpx.get(f"{server.url}/api/version").json()["version"])
    port = server.args[server.args.index("--ollama-port") + 1]
    with ollama.Client(host=f"http://127.0.0.1:{port}") as other:
        assert "tiny:latest" in {m.model for m in other.list().models}


def test_generate_whole_and_streamed(client: ollama.Client) -> None:
    whole = client.generate(model="tiny", prompt="hello world", options=GREEDY)
    _plausible_final(whole, 12)
    assert whole.response and whole.context and len(whole.context) > 12
    parts = list(
        client.generate(model="tiny:latest", prompt="hello world", options=GREEDY, stream=True)
    )
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].response == "" and parts[-1].model == "tiny:latest"
    _plausible_final(parts[-1], 12)
    assert parts[-1].context == whole.context


def test_generate_continues_from_context(client: ollama.Client) -> None:
    first = client.generate(model="tiny", prompt="red blue", raw=True, options=GREEDY)
    assert first.context is not None
    more = client.generate(
        model="tiny", prompt=" green", raw=True, context=first.context, options=GREEDY
    )
    assert more.context is not None and more.context[: len(first.context)] == first.context
    assert more.prompt_eval_count == len(more.context) - 12 > len(first.context)


def test_chat_whole_and_streamed(client: ollama.Client) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "name a color"},
    ]
    whole = client.chat(model="tiny", messages=messages, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    _plausible_final(whole, 12)
    parts = list(client.chat(model="tiny", messages=messages, options=GREEDY, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    _plausible_final(parts[-1], 12)


def test_options_stop_and_seed(client: ollama.Client) -> None:
    free = client.generate(
        model="tiny",
        prompt="the model",
        raw=True,
        options={"temperature": 0, "num_predict": 30, "ignore_eos": True},
    )
    words = [m.group() for m in re.finditer(r"[a-z]{3,}", free.response or "")][1:]
    assert words, free.response
    cut = client.generate(
        model="tiny",
        prompt="the model",
        raw=True,
        options={"temperature": 0, "num_predict": 30, "ignore_eos": True, "stop": [words[0]]},
    )
    assert cut.done_reason == "stop" and words[0] not in (cut.response or "")
    options = {
        "temperature": 1.0,
        "seed": 42,
        "num_predict": 16,
        "top_k": 50,
        "top_p": 0.95,
        "min_p": 0.01,
        "repeat_penalty": 1.2,
        "num_ctx": 1024,
        "num_thread": 2,
    }
    texts = {
        client.generate(model="tiny", prompt="hello", options=options).response for _ in range(2)
    }
    assert len(texts) == 1


def test_format_schema_gives_valid_json(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green", "blue"]}},
        "required": ["ok", "color"],
    }
    reply = client.chat(
        model="tiny",
        messages=[{"role": "user", "content": "answer"}],
        format=schema,
        options={"temperature": 0, "num_predict": 60},
    )
    jsonschema.validate(json.loads(reply.message.content or ""), schema)
    anything = client.generate(
        model="tiny", prompt="json", format="json", options={"temperature": 0, "num_predict": 60}
    )
    assert isinstance(json.loads(anything.response or ""), dict)


def test_embed_and_old_embeddings(client: ollama.Client) -> None:
    result = client.embed(model="tiny_embed", input=["hello world", "red blue"])
    assert [len(v) for v in result.embeddings] == [64, 64]
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in result.embeddings)
    assert result.prompt_eval_count is not None and result.prompt_eval_count > 2
    short = client.embed(model="tiny_embed", input="hello world", dimensions=16)
    assert len(short.embeddings[0]) == 16
    old = client.embeddings(model="tiny_embed", prompt="hello world")
    assert max(abs(a - b) for a, b in zip(old.embedding, result.embeddings[0], strict=True)) < 1e-4


def test_list_show_and_ps(client: ollama.Client) -> None:
    listed = {m.model: m for m in client.list().models}
    assert {"tiny:latest", "tiny_small:latest", "tiny_embed:latest"} <= set(listed)
    tiny = listed["tiny:latest"]
    assert tiny.size and tiny.size > 100_000 and tiny.digest and len(tiny.digest) == 64
    assert tiny.details is not None and tiny.details.format == "gguf"
    assert tiny.details.family == "llama" and tiny.details.quantization_level == "F32"
    shown = client.show("tiny_small")
    assert shown.capabilities == ["completion", "tools"]
    assert "<|im_start|>" in (shown.template or "")
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 4096
    assert "n_ctx 512" in (shown.parameters or "")
    assert client.show("tiny_embed").capabilities == ["embedding"]
    client.generate(model="tiny_small", prompt="hi", options={"num_predict": 2})
    running = {m.model: m for m in client.ps().models}
    small = running["tiny_small:latest"]
    assert small.size_vram == 0 and small.context_length == 512
    assert small.expires_at is not None and small.digest == listed["tiny_small:latest"].digest


def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: ollama.Client) -> None:
    loaded = client.generate(model="tiny_small", keep_alive="10m")
    assert loaded.done and loaded.done_reason == "load"
    assert "tiny_small:latest" in _loaded(client)
    client.chat(
        model="tiny_small",
        messages=[{"role": "user", "content": "hi"}],
        keep_alive=0,
        options={"num_predict": 2},
    )
    deadline = time.monotonic() + 5
    while "tiny_small:latest" in _loaded(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "tiny_small:latest" not in _loaded(client)
    client.generate(model="tiny_small", keep_alive=-1)
    forever = {m.model: m for m in client.ps().models}["tiny_small:latest"]
    assert forever.expires_at is not None and forever.expires_at.year == 9999
    unloaded = client.generate(model="tiny_small", keep_alive=0)
    assert unloaded.done_reason == "unload" and "tiny_small:latest" not in _loaded(client)


def test_copy_delete_and_pull_from_a_path(
    client: ollama.Client, repo: Path, tmp_path: Path
) -> None:
    assert client.copy("tiny", "tiny_copy").status == "success"
    assert (repo / "tiny_copy.gguf").stat().st_ino == (repo / "tiny.gguf").stat().st_ino
    copied = client.generate(model="tiny_copy", prompt="hello world", options=GREEDY)
    original = client.generate(model="tiny", prompt="hello world", options=GREEDY)
    assert copied.response == original.response
    assert client.delete("tiny_copy").status == "success"
    assert "tiny_copy:latest" not in {m.model for m in client.list().models}
    assert "tiny_copy:latest" not in _loaded(client)
    assert not (repo / "tiny_copy.gguf").exists() and (repo / "tiny.gguf").exists()

    outside = tmp_path / "fresh"
    outside.mkdir()
    (outside / "model.gguf").write_bytes((repo / "tiny.gguf").read_bytes())
    (outside / "model.yaml").write_text("runtime: llamacpp\nparameters:\n  n_ctx: 256\n")
    steps = list(client.pull(str(outside), stream=True))
    statuses = [s.status for s in steps]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses
    transfer = [s for s in steps if s.total]
    assert transfer and transfer[-1].completed == transfer[-1].total
    assert transfer[-1].total == sum(p.stat().st_size for p in outside.iterdir())
    assert (repo / "fresh" / "model.yaml").exists()
    assert client.show("fresh").parameters == "n_ctx 256"
    reply = client.generate(model="fresh", prompt="hello world", options=GREEDY)
    assert reply.response == original.response
    assert client.pull(str(outside / "model.gguf")).status == "success"  # as model `model`
    client.delete("model")
    client.delete("fresh")


def test_errors_in_ollama_shape(client: ollama.Client, server: ServerProcess) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.generate(model="nope", prompt="hi")
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as bad:
        client.generate(model="tiny", prompt="hi", options={"num_predict": "many"})
    assert bad.value.status_code == 400 and "num_predict" in bad.value.error
    with pytest.raises(ollama.ResponseError) as embedder:
        client.chat(model="tiny_embed", messages=[{"role": "user", "content": "hi"}])
    assert embedder.value.status_code == 400
    for body in (
        {"model": "tiny", "prompt": "hi", "images": ["aGk="]},
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}],
        },
        {"model": "tiny", "prompt": "hi", "think": True},
        {"model": "tiny", "prompt": "hi", "format": "yaml"},
    ):
        path = "/api/chat" if "messages" in body else "/api/generate"
        reply = httpx.post(f"{server.url}{path}", json=body)
        assert reply.status_code == 400 and set(reply.json()) == {"error"}, body
    with pytest.raises(ollama.ResponseError) as pull:
        client.pull("no-such-model:7b")
    assert pull.value.status_code == 404 and "no model hub" in pull.value.error
    with pytest.raises(ollama.ResponseError) as create:
        client.create(model="new", from_="tiny")
    assert create.value.status_code == 400 and "not supported" in create.value.error
    with pytest.raises(ollama.ResponseError) as copy:
        client.copy("tiny", "tiny_small")
    assert copy.value.status_code == 400 and "already exists" in copy.value.error
