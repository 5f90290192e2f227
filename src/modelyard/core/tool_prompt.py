"""Tools in the prompt. A chat template that handles tools itself (it reads `tools` and
writes calls as `<tool_call>` blocks: Qwen 2.5/3, Hermes 2 Pro/3 and their kin) renders them
its own way: it gets the tools, and assistant messages' `tool_calls` with their arguments as
objects. Any other template gets the generic format: the tools and how to call them in a
system message, assistant calls written as `<tool_call>` blocks in the message's text, and
tool results as a user message of `<tool_response>` blocks (every template renders those).

Both ways the model answers a call in the same syntax (`SYNTAX`), which the grammar enforces
and `core/tool_calls.py` reads back.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelyard.core.chat import ChatTemplate
from modelyard.core.tools import ToolRequest
from modelyard.errors import InvalidArgument
from modelyard.spec.generation import Tool, ToolSyntax

#: How calls are written, natively (Hermes-style templates) and in the generic format.
SYNTAX = ToolSyntax("<tool_call>", "</tool_call>", "arguments")

GENERIC_PROMPT = """# Tools

You can call functions. Each one is described by a JSON object on a line of its own: its \
name, what it does, and the JSON Schema of its arguments.

{tools}

To call a function, write a JSON object with its name and its arguments between \
<tool_call> and </tool_call>, like this:
<tool_call>
{{"name": "<function name>", "arguments": {{<the arguments as JSON>}}}}
</tool_call>
The results come back in a user message, each between <tool_response> and \
</tool_response>. {mode}"""

_MODES = {
    "auto": "Call functions when they help; otherwise answer directly.",
    "required": "Answer with function calls only.",
}


def native(template: ChatTemplate) -> bool:
    """Whether the template writes tools and calls itself, in `SYNTAX`."""
    return template.reads_tools and SYNTAX.start in template.source


def prepare(
    template: ChatTemplate, messages: list[dict[str, Any]], request: ToolRequest | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages to render and the template variables to add for `request`'s tools."""
    offered = request.offered if request is not None else ()
    if native(template):
        extra = {"tools": [_as_openai(t) for t in offered]} if offered else {}
        return [_with_object_arguments(m, i) for i, m in enumerate(messages)], extra
    out = _generic_messages(messages)
    if offered:
        assert request is not None
        out = _with_system(out, _generic_prompt(offered, request))
    return out, {}


def call_text(name: str, arguments: Any) -> str:
    """One call as the model writes it."""
    body = orjson.dumps({"name": name, SYNTAX.arguments: arguments}).decode()
    return f"{SYNTAX.start}\n{body}\n{SYNTAX.end}"


# ---- the template's own way ------------------------------------------------------------------


def _as_openai(tool: Tool) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    return {"type": "function", "function": function}


def _with_object_arguments(message: dict[str, Any], index: int) -> dict[str, Any]:
    """Templates write `arguments | tojson`: give them objects, not OpenAI's JSON strings."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = []
    for j, call in enumerate(_calls(calls, index)):
        name, arguments = _call(call, f"messages[{index}].tool_calls[{j}]")
        function = {**call["function"], "name": name, "arguments": arguments}
        out.append({**call, "function": function})
    return {**message, "tool_calls": out}


# ---- the generic format -----------------------------------------------------------------------


def _generic_prompt(tools: tuple[Tool, ...], request: ToolRequest) -> str:
    lines = [
        orjson.dumps(
            {"name": t.name, "description": t.description, "parameters": t.parameters}
        ).decode()
        for t in tools
    ]
    mode = _MODES.get(request.choice, f"Call the function {request.function} now.")
    if not request.parallel:
        mode += " Call at most one function."
    return GENERIC_PROMPT.format(tools="\n".join(lines), mode=mode)


def _with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") == "system":
        first = messages[0]
        joined = f"{first.get('content') or ''}\n\n{text}".lstrip()
        return [{**first, "content": joined}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _generic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant calls into the message's text; each run of tool results into one user
    message."""
    out: list[dict[str, Any]] = []
    results: list[str] = []
    for index, message in enumerate(messages):
        if message.get("role") == "tool":
            results.append(f"<tool_response>\n{message.get('content') or ''}\n</tool_response>")
            continue
        if results:
            out.append({"role": "user", "content": "\n".join(results)})
            results = []
        out.append(_calls_as_text(message, index) if message.get("tool_calls") else message)
    if results:
        out.append({"role": "user", "content": "\n".join(results)})
    return out


def _calls_as_text(message: dict[str, Any], index: int) -> dict[str, Any]:
    blocks = [
        call_text(*_call(call, f"messages[{index}].tool_calls[{j}]"))
        for j, call in enumerate(_calls(message["tool_calls"], index))
    ]
    text = str(message.get("content") or "").rstrip()
    content = "\n".join([text, *blocks] if text else blocks)
    return {k: v for k, v in message.items() if k != "tool_calls"} | {"content": content}


# ---- reading calls in messages ----------------------------------------------------------------


def _calls(value: Any, index: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidArgument(f"messages[{index}].tool_calls must be a list")
    return value


def _call(call: Any, where: str) -> tuple[str, Any]:
    """(name, arguments as an object) of a call in a message: OpenAI's (arguments as a JSON
    string) or Ollama's (as an object)."""
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise InvalidArgument(f'{where} must be {{"function": {{"name", "arguments"}}}}')
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"{where}.function.arguments is not JSON: {exc}") from exc
    return name, {} if arguments is None else arguments
