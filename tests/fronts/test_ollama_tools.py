"""Tool calling through Ollama's /api/chat with the official `ollama` client: `tools`, and
`message.tool_calls` with arguments as objects, streamed and not. Ollama has no tool_choice:
the model answers or calls; `tiny_tools` is a model that likes calling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import ollama
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(90)

ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
ADD = {
    "type": "function",
    "function": {"name": "add", "description": "Add two numbers", "parameters": ADD_PARAMETERS},
}
OPTIONS = {"temperature": 0, "num_predict": 100}
QUESTION = [{"role": "user", "content": "What is 1 + 2?"}]


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
      a: the first number
      b: the second number
    """
    return a + b


@pytest.fixture(scope="module")
def client(llm_server: ServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=llm_server.url) as client:
        yield client


def _check(calls: Any) -> None:
    assert calls, "no tool calls"
    for call in calls:
        assert call.function.name == "add"
        jsonschema.validate(dict(call.function.arguments), ADD_PARAMETERS)


def test_chat_with_tools_returns_tool_calls(client: ollama.Client) -> None:
    reply = client.chat(model="tiny_tools", messages=QUESTION, tools=[ADD], options=OPTIONS)
    assert reply.done and reply.message.role == "assistant"
    _check(reply.message.tool_calls)
    assert isinstance(reply.message.tool_calls[0].function.arguments["a"], int)  # type: ignore[index]


def test_streamed_chat_sends_each_call_once_complete(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model="tiny_tools", messages=QUESTION, tools=[add], options=OPTIONS, stream=True
        )
    )
    calls = [c for p in parts for c in p.message.tool_calls or []]
    _check(calls)
    assert parts[-1].done and parts[-1].done_reason in ("stop", "length")
    assert not parts[-1].message.tool_calls  # already sent


def test_a_model_may_answer_in_text(client: ollama.Client) -> None:
    reply = client.chat(
        model="tiny", messages=QUESTION, tools=[ADD], options={**OPTIONS, "num_predict": 12}
    )
    assert reply.message.content and not reply.message.tool_calls
    assert "<tool_call>" not in reply.message.content


@pytest.mark.parametrize("model", ["tiny", "tiny_tools", "tiny_bare"])
def test_tool_results_continue_the_conversation(client: ollama.Client, model: str) -> None:
    messages: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1, "b": 2}}}],
        },
        {"role": "tool", "content": "3", "tool_name": "add"},
    ]
    reply = client.chat(
        model=model, messages=messages, tools=[ADD], options={**OPTIONS, "num_predict": 8}
    )
    assert reply.done
    assert reply.prompt_eval_count is not None and reply.prompt_eval_count > 20


def test_bad_tools_are_400(llm_server: ServerProcess) -> None:
    for tools, message in [
        ([{"type": "function", "function": {"name": "no spaces"}}], "letters, digits"),
        ("add", "tools must be a list"),
    ]:
        body = {"model": "tiny", "messages": QUESTION, "tools": tools, "stream": False}
        reply = httpx.post(f"{llm_server.url}/api/chat", json=body, timeout=30)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"]
    body = {"model": "tiny_embed", "messages": QUESTION, "tools": [ADD], "stream": False}
    reply = httpx.post(f"{llm_server.url}/api/chat", json=body, timeout=30)
    assert reply.status_code == 400 and "embedding model" in reply.json()["error"]
