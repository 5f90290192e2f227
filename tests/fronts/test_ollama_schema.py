"""Reading Ollama request bodies: option names and defaults, keep-alive forms, format,
model names, and what is refused rather than ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from modelyard.fronts.ollama_schema import (
    keep_alive,
    model_name,
    read_chat,
    read_embed,
    read_generate,
    read_options,
)
from modelyard.repository.sources import resolve
from modelyard.repository.store import check_name
from modelyard.spec.generation import StructuredOutput


def test_options_take_ollamas_names_and_defaults() -> None:
    params, num_ctx = read_options(None)
    assert (params.temperature, params.top_k, params.top_p) == (0.8, 40, 0.9)
    assert params.repetition_penalty == 1.1 and params.max_tokens is None and num_ctx is None
    params, num_ctx = read_options(
        {
            "num_predict": 20,
            "temperature": 0,
            "top_k": 5,
            "top_p": 0.5,
            "min_p": 0.1,
            "repeat_penalty": 1.3,
            "repeat_last_n": 32,
            "seed": 7,
            "stop": ["\n"],
            "num_ctx": 2048,
            "num_thread": 4,
            "mirostat": 0,
            "presence_penalty": 0.5,
        }
    )
    assert (params.max_tokens, params.temperature, params.top_k, params.top_p) == (20, 0, 5, 0.5)
    assert (params.min_p, params.repetition_penalty, params.penalty_last_n) == (0.1, 1.3, 32)
    assert (params.seed, params.stop, params.presence_penalty) == (7, ("\n",), 0.5)
    assert num_ctx == 2048


@pytest.mark.parametrize(
    ("options", "field", "value"),
    [
        ({"num_predict": -1}, "max_tokens", None),
        ({"num_predict": -2}, "max_tokens", None),
        ({"seed": -1}, "seed", None),
        ({"repeat_penalty": 0}, "repetition_penalty", 1.0),
    ],
)
def test_options_special_values(options: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(read_options(options)[0], field) == value


@pytest.mark.parametrize(
    "options", [{"num_predict": 0}, {"temperature": "hot"}, {"num_ctx": 0}, {"top_p": 2}, "fast"]
)
def test_bad_options(options: Any) -> None:
    with pytest.raises(InvalidArgument):
        read_options(options)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5m", 300.0),
        (0, 0.0),
        ("0", 0.0),
        (-1, -1.0),
        ("-1", -1.0),
        ("-1m", -1.0),
        (3600, 3600.0),
        ("1h30m", 5400.0),
    ],
)
def test_keep_alive_forms(value: Any, seconds: float | None) -> None:
    assert keep_alive(value) == seconds


@pytest.mark.parametrize("value", [True, "soon", [1]])
def test_bad_keep_alive(value: Any) -> None:
    with pytest.raises(InvalidArgument):
        keep_alive(value)


def test_model_names_and_format() -> None:
    assert model_name("tiny:latest") == ("tiny", "tiny:latest")
    assert model_name(" gemma3:270m ") == ("gemma3:270m", "gemma3:270m")
    body = read_generate(
        {
            "model": "m",
            "prompt": "p",
            "format": "json",
            "stream": False,
            "keep_alive": "1m",
            "raw": True,
            "context": [1, 2],
        }
    )
    assert body.structured == StructuredOutput() and not body.stream and body.keep_alive_s == 60
    assert body.raw and body.context == [1, 2] and body.prompt == "p"
    schema = {"type": "object"}
    assert read_chat({"model": "m", "format": schema}).structured == StructuredOutput(schema)
    assert read_chat({"model": "m"}).messages == []
    assert read_generate({"model": "m", "logprobs": True, "top_logprobs": 3}).params.logprobs == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"model": ""},
        {"model": "m", "images": ["x"]},
        {"model": "m", "suffix": "s"},
        {"model": "m", "template": "{{ .Prompt }}"},
        {"model": "m", "think": True},
        {"model": "m", "format": "xml"},
        {"model": "m", "context": ["a"]},
        {"model": "m", "raw": 1},
        {"model": "m", "stream": "yes"},
    ],
)
def test_generate_refusals(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        read_generate(body)


def test_chat_refusals() -> None:
    with pytest.raises(InvalidArgument, match="tool"):
        read_chat({"model": "m", "tools": [{"type": "function"}]})
    with pytest.raises(InvalidArgument, match="images"):
        read_chat({"model": "m", "messages": [{"role": "user", "content": "x", "images": ["a"]}]})


def test_embed_bodies() -> None:
    assert read_embed({"model": "e", "input": "a"}).texts == ["a"]
    assert read_embed({"model": "e", "input": ["a", "b"], "dimensions": 8}).dimensions == 8
    assert read_embed({"model": "e", "input": ""}).texts == []
    assert read_embed({"model": "e", "prompt": "x"}, old=True).texts == ["x"]
    with pytest.raises(InvalidArgument):
        read_embed({"model": "e", "input": [1]})


def test_pull_sources_and_names(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no model hub"):
        resolve("library/llama3:8b")
    with pytest.raises(NotFound, match="does not exist"):
        resolve(str(tmp_path / "missing.gguf"), [tmp_path])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidArgument, match="not a model"):
        resolve(str(tmp_path / "notes.txt"), [tmp_path])
    with pytest.raises(FailedPrecondition, match="--pull-from"):  # not even whether it exists
        resolve(str(tmp_path / "notes.txt"))
    for bad in ("../x", "a/b", ".hidden", "", "x" * 200):
        with pytest.raises(InvalidArgument):
            check_name(bad)
    check_name("gemma3:270m")
