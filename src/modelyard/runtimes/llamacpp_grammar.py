"""GBNF grammars (llama.cpp's grammar language) for what an output must look like: JSON, JSON
matching a schema (llama-cpp-python's schema converter), and tool calls — text, or calls whose
arguments match the called tool's schema, in the model's tool-call syntax.

A tool-call grammar is one converter's rules for every tool (each call object is
`{"name": <const>, "<arguments>": <the tool's parameters>}`, name first), plus the rules
written here: the calls between the syntax's markers, and free text that never contains the
start marker (a rule per state of the marker's string-matching automaton), so text either
stays text or turns into a call that follows the grammar from its first character.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from modelyard.errors import InvalidArgument
from modelyard.runtimes.llamacpp_regex import regex_gbnf
from modelyard.spec.generation import (
    Constraint,
    RegexOutput,
    StructuredOutput,
    Tool,
    ToolCalling,
    ToolSyntax,
)


def gbnf(constraint: Constraint) -> str:
    """The GBNF grammar llama.cpp enforces for `constraint` (InvalidArgument when a schema
    cannot be expressed)."""
    if isinstance(constraint, ToolCalling):
        return _tool_gbnf(_key(constraint))
    if isinstance(constraint, RegexOutput):
        return regex_gbnf(constraint.pattern)
    if constraint.schema is None:
        from llama_cpp import llama_grammar

        return str(llama_grammar.JSON_GBNF)
    return _schema_gbnf(orjson.dumps(constraint.schema, option=orjson.OPT_SORT_KEYS).decode())


def check_tool(tool: Tool, syntax: ToolSyntax) -> None:
    """Raise InvalidArgument naming the tool when its parameters cannot be enforced."""
    _tool_gbnf(_key(ToolCalling((tool,), syntax, required=True)))


@functools.lru_cache(maxsize=64)
def _schema_gbnf(schema: str) -> str:
    from llama_cpp import llama_grammar

    try:
        return _strict_strings(str(llama_grammar.json_schema_to_gbnf(schema)))
    except Exception as exc:  # the converter raises plain errors on schemas it cannot do
        raise InvalidArgument(f"cannot enforce this JSON schema: {exc}") from exc


def _strict_strings(rules: str) -> str:
    """The converter's strings let control characters through unescaped, which JSON parsers
    refuse (llama.cpp's own converter excludes them): exclude them."""
    return "\n".join(_CHAR if line.startswith("char ::= ") else line for line in rules.splitlines())


_CHAR = (
    r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)


def _key(calling: ToolCalling) -> str:
    """`calling` as text: the grammar cache's key (and a fresh copy of every schema, which
    the converter changes as it resolves $refs)."""
    text = calling.text
    return orjson.dumps(
        {
            "tools": [[t.name, t.parameters] for t in calling.tools],
            "syntax": [calling.syntax.start, calling.syntax.end, calling.syntax.arguments],
            "required": calling.required,
            "parallel": calling.parallel,
            "max_calls": calling.max_calls,
            "text": None if text is None else [text.schema],
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def _calling(key: str) -> ToolCalling:
    spec = orjson.loads(key)
    return ToolCalling(
        tuple(Tool(name, "", parameters) for name, parameters in spec["tools"]),
        ToolSyntax(*spec["syntax"]),
        spec["required"],
        spec["parallel"],
        max_calls=spec["max_calls"],
        text=None if spec["text"] is None else StructuredOutput(spec["text"][0]),
    )


@functools.lru_cache(maxsize=64)
def _tool_gbnf(key: str) -> str:
    calling = _calling(key)
    converter = _converter()
    calls = [_call_rule(converter, i, tool, calling.syntax) for i, tool in enumerate(calling.tools)]
    text_rule = None
    if calling.text is not None:
        schema = calling.text.schema
        text_rule = _visit(converter, {"type": "object"} if schema is None else schema, "text")
    rules = _strict_strings(str(converter.format_grammar()))
    names = {line.partition(" ::= ")[0] for line in rules.splitlines()}
    return rules + "\n" + "\n".join(_outer_rules(calling, calls, text_rule, names)) + "\n"


def _converter() -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )


def _call_rule(converter: Any, index: int, tool: Tool, syntax: ToolSyntax) -> str:
    """The rule of a call to `tool`; its $refs resolve within its own schema."""
    try:
        resolved = converter.resolve_refs(tool.parameters, f"tool-{index}")
        call = {
            "type": "object",
            "properties": {"name": {"const": tool.name}, syntax.arguments: resolved},
            "required": ["name", syntax.arguments],
            "additionalProperties": False,
        }
        return str(converter.visit(call, f"tool-{index}"))
    except Exception as exc:  # the converter raises plain errors on schemas it cannot do
        reason = str(exc) or type(exc).__name__
        raise InvalidArgument(
            f"tool {tool.name!r}: cannot enforce its parameters schema: {reason}"
        ) from exc


def _visit(converter: Any, schema: dict[str, Any], name: str) -> str:
    try:
        return str(converter.visit(converter.resolve_refs(schema, name), name))
    except Exception as exc:
        raise InvalidArgument(f"cannot enforce this JSON schema: {exc}") from exc


def _outer_rules(
    calling: ToolCalling, calls: list[str], text_rule: str | None, taken: set[str]
) -> list[str]:
    """`root` and the rules around the converter's: calls, and text that is not a call."""
    prefix = _fresh("x-tools", taken)
    start, end = _literal(calling.syntax.start), _literal(calling.syntax.end)
    call, many = f"{prefix}-call", f"{prefix}-calls"
    rules = []
    if calls:
        repeat = f"{{0,{calling.max_calls - 1}}}"
        more = f' ("\\n"? {call}){repeat}' if calling.parallel and calling.max_calls > 1 else ""
        rules += [
            f"{prefix}-object ::= {' | '.join(calls)}",
            f'{call} ::= {start} "\\n"? {prefix}-object "\\n"? {end}',
            f"{many} ::= {call}{more}",
        ]
    if calling.required:
        root = many
    elif text_rule is not None:  # JSON text, or calls
        root = f"{text_rule} | {many}" if calls else text_rule
    else:  # free text, then calls if any
        rules += _prose_rules(f"{prefix}-text", calling.syntax.start)
        root = f"{prefix}-text-0 {many}?" if calls else f"{prefix}-text-0"
    return [f"root ::= {root}", *rules]


def _prose_rules(name: str, marker: str) -> list[str]:
    """Rules `name-0` .. `name-(n-1)`: any text that never contains `marker`. State i has
    matched the first i characters of the marker (Knuth-Morris-Pratt); the character that
    would complete it is never allowed."""
    alphabet = sorted(set(marker))
    rules = []
    for state in range(len(marker)):
        moves = {c: _next_state(marker, state, c) for c in alphabet}
        back = [c for c in alphabet if moves[c] == 0]
        alternatives = [f"[^{_chars(alphabet)}] {name}-0"]
        if back:
            alternatives.append(f"[{_chars(back)}] {name}-0")
        alternatives += [
            f"{_literal(c)} {name}-{moves[c]}" for c in alphabet if 0 < moves[c] < len(marker)
        ]
        rules.append(f"{name}-{state} ::= ({' | '.join(alternatives)})?")
    return rules


def _next_state(marker: str, state: int, char: str) -> int:
    """How much of `marker` is matched after `char`, having matched `state` characters."""
    text = marker[:state] + char
    for n in range(min(len(text), len(marker)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def _chars(chars: list[str]) -> str:
    """Characters for a GBNF character class, each escaped (no range or negation by mistake)."""
    return "".join(f"\\U{ord(c):08X}" for c in chars)


def _literal(text: str) -> str:
    """A GBNF string literal: printable ASCII as is, anything else escaped."""
    return (
        '"'
        + "".join(
            c if c.isascii() and c.isprintable() and c not in '"\\' else f"\\U{ord(c):08X}"
            for c in text
        )
        + '"'
    )


def _fresh(prefix: str, taken: set[str]) -> str:
    """`prefix`, or `prefix` with a number, such that no rule in `taken` starts with it."""
    candidate, n = prefix, 0
    while any(t.startswith(candidate) for t in taken):
        n += 1
        candidate = f"{prefix}{n}"
    return candidate
