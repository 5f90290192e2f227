"""Tools in the prompt (core/tool_prompt.py) and reading a request's tools (core/tools.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelyard.core import chat, tool_prompt, tools
from modelyard.errors import InvalidArgument
from modelyard.spec.generation import StructuredOutput, ToolCalling
from tests.llm_models import CHATML, TOOLS_CHATML

PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
ADD = {
    "type": "function",
    "function": {"name": "add", "description": "Add two numbers", "parameters": PARAMETERS},
}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "1+2 and 3+4?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 3, "b": 4}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    {"role": "tool", "tool_call_id": "call_2", "content": "7"},
]


def _render(source: str, request: tools.ToolRequest | None, messages: Any = None) -> str:
    template = chat.ChatTemplate(source)
    normalized = chat.normalize(CONVERSATION if messages is None else messages)
    prepared, extra = tool_prompt.prepare(template, normalized, request)
    return template.render(prepared, **extra)


def test_a_template_that_reads_tools_renders_them_itself() -> None:
    assert tool_prompt.native(chat.ChatTemplate(TOOLS_CHATML))
    assert not tool_prompt.native(chat.ChatTemplate(CHATML))
    text = _render(TOOLS_CHATML, tools.read([ADD]))
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert json.dumps(ADD) in text  # tojson keeps the keys' order and does not escape
    calls = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    assert calls in text  # OpenAI's JSON-string arguments reach the template as objects
    assert "<|im_start|>user\n<tool_response>\n7\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_the_generic_format_for_templates_without_tools() -> None:
    text = _render(CHATML, tools.read([ADD], "required", False))
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    described = {"name": "add", "description": "Add two numbers", "parameters": PARAMETERS}
    assert json.dumps(described, separators=(",", ":")) in system
    assert "Answer with function calls only. Call at most one function." in system
    call = '<tool_call>\n{"name":"add","arguments":{"a":1,"b":2}}\n</tool_call>'
    assert f"<|im_start|>assistant\n{call}\n<tool_call>" in text
    results = "<tool_response>\n3\n</tool_response>\n<tool_response>\n7\n</tool_response>"
    assert f"<|im_start|>user\n{results}<|im_end|>" in text
    assert "<|im_start|>tool" not in text


def test_the_generic_format_names_the_function_to_call() -> None:
    named = {"type": "function", "function": {"name": "add"}}
    text = _render(CHATML, tools.read([ADD], named), [{"role": "user", "content": "hi"}])
    assert text.startswith("<|im_start|>system\n# Tools")
    assert "Call the function add now." in text


def test_no_tools_in_the_prompt_when_none_may_be_called() -> None:
    for source in (CHATML, TOOLS_CHATML):
        text = _render(source, tools.read([ADD], "none"))
        assert "# Tools" not in text and "Be brief." in text


def test_calls_in_messages_must_read() -> None:
    bad = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": "{}"}}]}]
    with pytest.raises(InvalidArgument, match=r"messages\[0\]\.tool_calls\[0\]"):
        _render(CHATML, None, bad)
    broken = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}]
    with pytest.raises(InvalidArgument, match="not JSON"):
        _render(TOOLS_CHATML, None, broken)


def test_the_choice_becomes_the_constraint() -> None:
    request = tools.read([ADD, {**ADD, "function": {"name": "sub"}}])
    assert request is not None and request.choice == "auto" and request.parallel
    auto = request.constraint(tool_prompt.SYNTAX, None)
    assert isinstance(auto, ToolCalling) and not auto.required and len(auto.tools) == 2
    named = tools.read([ADD], {"type": "function", "function": {"name": "add"}})
    assert named is not None
    one = named.constraint(tool_prompt.SYNTAX, None)
    assert isinstance(one, ToolCalling) and one.required and not one.parallel
    json_text = StructuredOutput({"type": "object"})
    none = tools.read([ADD], "none")
    assert none is not None and none.constraint(tool_prompt.SYNTAX, json_text) is json_text
    assert none.constraint(tool_prompt.SYNTAX, None) == ToolCalling((), tool_prompt.SYNTAX)
    assert tools.read([]) is None and tools.read(None, "auto") is None


@pytest.mark.parametrize(
    ("value", "choice", "message"),
    [
        ([{"type": "function"}], None, r"tools\[0\].function must be an object"),
        ([{"type": "retrieval"}], None, r'tools\[0\] must be \{"type": "function"'),
        ([{"function": {"name": "a b"}}], None, "1 to 64 letters"),
        ([{"function": {"name": "f", "parameters": "x"}}], None, "JSON Schema object"),
        (
            [{"function": {"name": "f", "parameters": {"type": "array"}}}],
            None,
            "describe an object",
        ),
        ([ADD, ADD], None, "add repeat"),
        ([ADD], "sometimes", 'tool_choice must be "auto"'),
        (
            [ADD],
            {"type": "function", "function": {"name": "mul"}},
            r"'mul', which is not in tools \(add\)",
        ),
        (None, "required", "tool_choice needs tools"),
    ],
)
def test_bad_tools_say_what_to_fix(value: Any, choice: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        tools.read(value, choice)
