"""What a request asks about tools: the functions offered (OpenAI's shape, which Ollama's API
shares), the choice (`auto`, `none`, `required`, or one named function) and whether several
calls may come at once; read and checked here so both fronts say the same things, and turned
into the constraint the backend enforces (`ToolCalling` in spec).

    request = tools.read(body["tools"], body.get("tool_choice"), body.get("parallel_tool_calls"))
    session.chat(messages, params, tools=request)      # the tools go into the prompt
    session.constrain(params, structured, tools=request)  # and into the grammar
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from modelyard.errors import InvalidArgument
from modelyard.spec.generation import StructuredOutput, Tool, ToolCalling, ToolSyntax

Choice = Literal["auto", "none", "required", "function"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEMA_HINT = 'a JSON Schema object such as {"type": "object", "properties": {...}}'


@dataclass(frozen=True)
class ToolRequest:
    tools: tuple[Tool, ...]
    choice: Choice = "auto"
    #: The function `choice: "function"` names.
    function: str = ""
    parallel: bool = True

    @property
    def offered(self) -> tuple[Tool, ...]:
        """The tools the prompt describes (none when the model must not call any)."""
        return () if self.choice == "none" else self.tools

    def constraint(
        self, syntax: ToolSyntax, text: StructuredOutput | None
    ) -> ToolCalling | StructuredOutput:
        """What the output must look like: text (or `text`'s JSON) never starting a call
        (`none`), text or calls (`auto`), calls only (`required`), or exactly one call to
        the named function."""
        if self.choice == "none":
            return text if text is not None else ToolCalling((), syntax)
        if self.choice == "auto":
            return ToolCalling(self.tools, syntax, parallel=self.parallel, text=text)
        if self.choice == "required":
            return ToolCalling(self.tools, syntax, required=True, parallel=self.parallel)
        named = tuple(t for t in self.tools if t.name == self.function)
        return ToolCalling(named, syntax, required=True, parallel=False)


def read(tools: Any, choice: Any = None, parallel: Any = None) -> ToolRequest | None:
    """The tool request of a body's `tools`, `tool_choice` and `parallel_tool_calls` (None
    when it offers no tools)."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidArgument("tool_choice needs tools: list the functions in tools")
        return None
    offered = read_tools(tools)
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidArgument("parallel_tool_calls must be true or false")
    kind, name = _read_choice(choice, offered)
    return ToolRequest(offered, kind, name, True if parallel is None else parallel)


def read_tools(value: Any) -> tuple[Tool, ...]:
    if not isinstance(value, list):
        raise InvalidArgument(
            'tools must be a list of {"type": "function", "function": {"name", "parameters"}}'
        )
    tools = tuple(_tool(item, f"tools[{i}]") for i, item in enumerate(value))
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidArgument(f"tools: function names must differ; {', '.join(twice)} repeat")
    return tools


def _tool(item: Any, where: str) -> Tool:
    if not isinstance(item, dict) or item.get("type", "function") != "function":
        raise InvalidArgument(f'{where} must be {{"type": "function", "function": {{...}}}}')
    function = item.get("function")
    if not isinstance(function, dict):
        raise InvalidArgument(f"{where}.function must be an object with name and parameters")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"{where}.function.name must be 1 to 64 letters, digits, _ or -; got {name!r}"
        )
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise InvalidArgument(f"{where}.function.description must be a string")
    return Tool(name, description, _parameters(function.get("parameters"), where))


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {"type": "object", "properties": {}}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}.function.parameters must be {_SCHEMA_HINT}")
    if value.get("type", "object") != "object":
        raise InvalidArgument(
            f"{where}.function.parameters must describe an object (type: object), "
            f"got type {value.get('type')!r}"
        )
    return value


def _read_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[Choice, str]:
    if value is None or value == "auto":
        return "auto", ""
    if value in ("none", "required"):
        return value, ""
    name = _named(value)
    if name is None:
        raise InvalidArgument(
            'tool_choice must be "auto", "none", "required" or '
            '{"type": "function", "function": {"name": ...}}'
        )
    if name not in {t.name for t in tools}:
        known = ", ".join(t.name for t in tools)
        raise InvalidArgument(f"tool_choice names {name!r}, which is not in tools ({known})")
    return "function", name


def _named(value: Any) -> str | None:
    if not isinstance(value, dict) or value.get("type") != "function":
        return None
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None
