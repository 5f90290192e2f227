"""The grammars llama.cpp enforces for tool calls (runtimes/llamacpp_grammar.py), checked by
llama.cpp's own grammar sampler over the tiny model's vocabulary, one character per token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidArgument
from modelyard.spec.config import ModelConfig
from modelyard.spec.generation import (
    Constraint,
    StructuredOutput,
    Tool,
    ToolCalling,
    ToolSyntax,
)

SYNTAX = ToolSyntax()
WEATHER = Tool(
    "get_weather",
    "",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}},
        "required": ["city", "unit"],
        "$defs": {"Unit": {"enum": ["c", "f"]}},
    },
)
ADD = Tool(
    "add",
    "",
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
WEATHER_JSON = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'
CALL = f"<tool_call>\n{WEATHER_JSON}\n</tool_call>"
ADD_CALL = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'


class Checker:
    """Whether llama.cpp's grammar sampler lets a whole text through, then the end token."""

    def __init__(self, runtime: Any) -> None:
        from modelyard.runtimes.llamacpp_lib import lc

        self.lc = lc
        self.runtime = runtime
        self.backend = runtime.generator
        self.tokens: dict[bytes, int] = {}
        for token in range(self.backend.n_vocab):
            self.tokens.setdefault(self.backend.piece(token), token)

    def accepts(self, constraint: Constraint, text: str) -> bool:
        from modelyard.runtimes.llamacpp_grammar import gbnf

        grammar = self.lc.llama_sampler_init_grammar(
            self.runtime.vocab, gbnf(constraint).encode(), b"root"
        )
        assert grammar, "the grammar does not parse"
        try:
            for byte in text.encode():
                token = self.tokens[bytes([byte])]
                if not self.backend.grammar_allows(grammar, token):
                    return False
                self.lc.llama_sampler_accept(grammar, token)
            return bool(self.backend.grammar_allows(grammar, int(self.backend.end_tokens[0])))
        finally:
            self.lc.llama_sampler_free(grammar)


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checker]:
    pytest.importorskip("llama_cpp")
    from modelyard.runtimes.llamacpp import LlamaCppRuntime
    from tests.llm_models import tiny_gguf

    path = tiny_gguf(Path(tmp_path_factory.mktemp("grammar")) / "tiny.gguf")
    parameters = {"n_ctx": "128", "n_seq_max": "1", "n_threads": "1"}
    runtime = LlamaCppRuntime(path, ModelConfig("tiny", "llamacpp", parameters=parameters))
    runtime.load()
    yield Checker(runtime)
    runtime.unload()


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("Plain text, even <b>tags</b> and a < b <tool", True),
        ("", True),
        (CALL, True),
        ("Let me check. " + CALL, True),
        (CALL + "\n" + ADD_CALL, True),
        ('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>', False),
        ('<tool_call>{"name": "add", "arguments": {"a": "one", "b": 2}}</tool_call>', False),
        ('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', False),
        (CALL + " and more text", False),
        ("<tool_call> not a call", False),
    ],
)
def test_auto_allows_text_or_calls_that_follow_the_schemas(
    checker: Checker, text: str, allowed: bool
) -> None:
    assert checker.accepts(ToolCalling((WEATHER, ADD), SYNTAX), text) is allowed


def test_required_and_named_allow_calls_only(checker: Checker) -> None:
    required = ToolCalling((WEATHER, ADD), SYNTAX, required=True)
    assert checker.accepts(required, CALL + ADD_CALL)
    assert not checker.accepts(required, "Sure. " + CALL)
    assert not checker.accepts(required, "")
    one = ToolCalling((ADD,), SYNTAX, required=True, parallel=False)
    assert checker.accepts(one, ADD_CALL)
    assert not checker.accepts(one, ADD_CALL + ADD_CALL)
    assert not checker.accepts(one, CALL)


def test_none_allows_text_that_never_calls(checker: Checker) -> None:
    none = ToolCalling((), SYNTAX)
    assert checker.accepts(none, "a <tool_cal l> b")
    assert not checker.accepts(none, CALL)


def test_auto_with_a_json_schema_allows_that_json_or_calls(checker: Checker) -> None:
    text = StructuredOutput({"type": "object", "properties": {"ok": {"type": "boolean"}}})
    both = ToolCalling((ADD,), SYNTAX, text=text)
    assert checker.accepts(both, '{"ok": true}')
    assert checker.accepts(both, ADD_CALL)
    assert not checker.accepts(both, "free text")


def test_a_schema_that_cannot_be_enforced_names_its_tool(checker: Checker) -> None:
    bad = Tool("lookup", "", {"type": "object", "properties": {"x": {"type": "tensor"}}})
    with pytest.raises(InvalidArgument, match="tool 'lookup': cannot enforce its parameters"):
        checker.runtime.check_structured(ToolCalling((ADD, bad), SYNTAX))


def test_strings_refuse_raw_control_characters(checker: Checker) -> None:
    """JSON parsers refuse them (the schema converter alone lets them through)."""
    calling = ToolCalling((WEATHER,), SYNTAX, required=True)
    assert checker.accepts(calling, CALL.replace("Paris", "Pa\\tris"))
    assert not checker.accepts(calling, CALL.replace("Paris", "Pa\tris"))
    assert not checker.accepts(calling, CALL.replace("Paris", "Pa\x17ris"))
