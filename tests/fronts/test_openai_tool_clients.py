"""Libraries that reach structured output through tool calls: LangChain's `bind_tools` and
`with_structured_output`, instructor's `Mode.TOOLS`, against the real server."""

from __future__ import annotations

from typing import Any, Literal

import instructor
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(90)


class Weather(BaseModel):
    """Look up the weather in a city."""

    city: str = Field(pattern=r"^[a-z]{1,10}$")
    unit: Literal["celsius", "fahrenheit"]


class Sum(BaseModel):
    """Add two numbers."""

    a: int
    b: int


@pytest.fixture(scope="module")
def chat_model(llm_server: ServerProcess) -> ChatOpenAI:
    return ChatOpenAI(
        model="tiny_tools",
        base_url=f"{llm_server.url}/v1",
        api_key=lambda: "unused",
        temperature=0,
        max_completion_tokens=120,
        max_retries=0,
    )


@pytest.mark.parametrize("model", ["tiny", "tiny_tools"])
def test_langchain_bind_tools_with_a_forced_tool(chat_model: ChatOpenAI, model: str) -> None:
    bound = chat_model.model_copy(update={"model_name": model}).bind_tools(
        [Weather, Sum], tool_choice="Weather"
    )
    message = bound.invoke("What is the weather in Paris?")
    assert isinstance(message, AIMessage)
    [call] = message.tool_calls
    assert call["name"] == "Weather" and call["id"]
    Weather.model_validate(call["args"])
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_langchain_streams_tool_calls(chat_model: ChatOpenAI) -> None:
    bound = chat_model.bind_tools([Sum], tool_choice="any", parallel_tool_calls=False)
    chunks = list(bound.stream("What is 2 + 3?"))
    assert len(chunks) > 5
    whole: Any = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert isinstance(whole, AIMessageChunk)
    [call] = whole.tool_calls
    assert call["name"] == "Sum"
    Sum.model_validate(call["args"])


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_langchain_with_structured_output(chat_model: ChatOpenAI, method: str) -> None:
    """function_calling (BaseChatOpenAI's default, and what most agents use) and
    json_schema (ChatOpenAI's default)."""
    structured = chat_model.with_structured_output(Weather, method=method)  # type: ignore[arg-type]
    weather = structured.invoke("What is the weather in Paris?")
    assert isinstance(weather, Weather)


def test_instructor_tools_mode(llm_server: ServerProcess) -> None:
    client = instructor.from_openai(
        openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0),
        mode=instructor.Mode.TOOLS,
    )
    weather = client.chat.completions.create(
        model="tiny",
        response_model=Weather,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        temperature=0,
        max_tokens=120,
        max_retries=0,
    )
    assert isinstance(weather, Weather)
    assert weather.unit in ("celsius", "fahrenheit")
