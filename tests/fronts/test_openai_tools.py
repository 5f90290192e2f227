"""Tool calling through the OpenAI API with the official openai client, on the tiny models:
`tiny` (a ChatML template without tools: the generic format), `tiny_tools` (a template that
writes tools and calls itself, and a model that likes calling them) and `tiny_bare` (no
template). The grammar makes every call's arguments match its tool's schema, so even a
random model's calls are checkable."""

from __future__ import annotations

import json
from typing import Any, cast

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
    ParsedFunctionToolCall,
)
from openai.types.chat.chat_completion_message_function_tool_call import Function

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(90)

ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
SCHEMAS = {"add": ADD_PARAMETERS, "get_weather": WEATHER_PARAMETERS}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": name, "description": f"{name} tool", "parameters": schema},
    }
    for name, schema in SCHEMAS.items()
]
ADD_ONLY = {"type": "function", "function": {"name": "add"}}
NO_END = {
    "2": -100,
    "4": -100,
}  # </s> and <|im_end|>: a reply can end only where nothing else may follow
MODELS = ["tiny", "tiny_tools", "tiny_bare"]


@pytest.fixture(scope="module")
def client(llm_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0)


def _chat(client: openai.OpenAI, **kwargs: Any) -> ChatCompletion:
    options: dict[str, Any] = {
        "model": "tiny",
        "temperature": 0,
        "max_tokens": 120,
        "messages": [{"role": "user", "content": "What is 1 + 2?"}],
        "tools": TOOLS,
    }
    return cast(ChatCompletion, client.chat.completions.create(**{**options, **kwargs}))


def _function(call: object) -> Function:
    assert isinstance(call, ChatCompletionMessageFunctionToolCall), call
    return call.function


def _valid(name: str, arguments: str) -> dict[str, Any]:
    value = json.loads(arguments)
    jsonschema.validate(value, SCHEMAS[name])
    return cast(dict[str, Any], value)


@pytest.mark.parametrize("model", MODELS)
def test_a_named_tool_is_called_with_valid_arguments(client: openai.OpenAI, model: str) -> None:
    reply = _chat(client, model=model, tool_choice=ADD_ONLY)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].id.startswith("call_")
    function = _function(calls[0])
    assert function.name == "add"
    assert set(_valid("add", function.arguments)) == {"a", "b"}


@pytest.mark.parametrize("model", MODELS)
def test_required_calls_one_of_the_tools(client: openai.OpenAI, model: str) -> None:
    reply = _chat(client, model=model, tool_choice="required", parallel_tool_calls=False)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    function = _function(call)
    _valid(function.name, function.arguments)


def test_auto_answers_in_text_or_calls(client: openai.OpenAI) -> None:
    text = _chat(client, model="tiny", tool_choice="auto", max_tokens=16)
    assert text.choices[0].message.tool_calls is None
    assert text.choices[0].message.content
    assert "<tool_call>" not in text.choices[0].message.content
    called = _chat(client, model="tiny_tools", parallel_tool_calls=False)  # auto by default
    assert called.choices[0].finish_reason == "tool_calls"
    [call] = called.choices[0].message.tool_calls or []
    function = _function(call)
    _valid(function.name, function.arguments)


def test_none_answers_in_text_even_from_a_model_that_likes_calling(
    client: openai.OpenAI,
) -> None:
    reply = _chat(client, model="tiny_tools", tool_choice="none", max_tokens=24)
    message = reply.choices[0].message
    assert message.tool_calls is None and message.content is not None
    assert "<tool_call>" not in message.content
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_parallel_calls_where_asked(client: openai.OpenAI) -> None:
    """With the reply's end tokens pushed away, the model calls as long as it may: up to 8
    calls in one reply (a model that goes on is looping), then the reply ends."""
    many = _chat(client, tool_choice="required", logit_bias=NO_END, max_tokens=1000)
    calls = many.choices[0].message.tool_calls or []
    assert len(calls) == 8 and many.choices[0].finish_reason == "tool_calls", calls
    assert len({c.id for c in calls}) == len(calls)
    function = _function(calls[0])
    _valid(function.name, function.arguments)
    one = _chat(client, tool_choice="required", logit_bias=NO_END, parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls or []) == 1
    assert one.choices[0].finish_reason == "tool_calls"


def _stream(client: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    options: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    stream = client.chat.completions.create(
        model="tiny_tools",
        temperature=0,
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        **{**options, **kwargs},
    )
    return list(cast(openai.Stream[ChatCompletionChunk], stream))


def _accumulate(chunks: list[ChatCompletionChunk]) -> dict[int, dict[str, str]]:
    """Tool calls from `delta.tool_calls` as clients put them together."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.id or ""
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
    return calls


def test_streamed_calls_accumulate(client: openai.OpenAI) -> None:
    chunks = _stream(client, tool_choice="required", logit_bias=NO_END)
    calls = _accumulate(chunks)
    assert len(calls) >= 2
    firsts = [
        p
        for c in chunks
        if c.choices
        for p in c.choices[0].delta.tool_calls or []
        if p.function is not None and p.function.name
    ]
    assert [p.index for p in firsts] == sorted(calls)
    assert all(p.id and p.type == "function" for p in firsts)
    assert _valid(calls[0]["name"], calls[0]["arguments"])
    fragments = [
        p for c in chunks if c.choices for p in c.choices[0].delta.tool_calls or [] if p.id is None
    ]
    assert len(fragments) > 3  # the arguments arrive in pieces
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and chunks[-1].usage is not None


def test_the_clients_stream_helper_rebuilds_the_call(client: openai.OpenAI) -> None:
    strict: list[Any] = [{**t, "function": {**t["function"], "strict": True}} for t in TOOLS]
    with client.chat.completions.stream(
        model="tiny_tools",
        temperature=0,
        max_tokens=120,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=strict,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert isinstance(call, ParsedFunctionToolCall)
    assert call.function.name == "get_weather"
    assert call.function.parsed_arguments == _valid("get_weather", call.function.arguments)


@pytest.mark.parametrize("model", MODELS)
def test_tool_results_continue_the_conversation(client: openai.OpenAI, model: str) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "You add numbers."},
        {"role": "user", "content": "What is 1 + 2?"},
    ]
    first = _chat(client, model=model, messages=messages, tool_choice=ADD_ONLY)
    call = (first.choices[0].message.tool_calls or [])[0]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "3"},
    ]
    answer = _chat(client, model=model, messages=messages, max_tokens=12)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > (first.usage.prompt_tokens if first.usage else 0)
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_json_text_or_calls(client: openai.OpenAI) -> None:
    """response_format with tools: the reply is that JSON, or calls."""
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
    }
    reply = _chat(
        client,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    message = reply.choices[0].message
    if message.tool_calls:
        function = _function(message.tool_calls[0])
        _valid(function.name, function.arguments)
    else:
        jsonschema.validate(json.loads(message.content or ""), schema)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "letters, digits"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "mul"}}},
            "'mul', which is not in tools",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "lookup",
                            "parameters": {"type": "object", "properties": {"q": {"type": "x"}}},
                        },
                    }
                ]
            },
            "tool 'lookup': cannot enforce its parameters schema",
        ),
        ({"tool_choice": "required"}, "tool_choice needs tools"),
        ({"functions": [{"name": "f"}]}, "use tools and tool_choice"),
        ({"model": "tiny_embed", "tools": TOOLS}, "embedding model"),
    ],
)
def test_bad_tools_are_400_saying_what_to_fix(
    llm_server: ServerProcess, extra: dict[str, Any], message: str
) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}
    reply = httpx.post(f"{llm_server.url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]
