"""Reading tool calls out of a reply as its text arrives (core/tool_calls.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from modelyard.core.tool_calls import ToolCall, ToolCallReader, gather
from modelyard.core.tool_prompt import SYNTAX
from modelyard.spec.generation import Delta, Finish, ToolCallDelta

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": [2, "}\\""]}}\n</tool_call>'


def _read(pieces: list[str], finish: Finish = Finish.STOP) -> tuple[list[Delta], list[ToolCall]]:
    """The deltas a reader makes of `pieces` (the last one finishing), and the calls."""
    reader = ToolCallReader(SYNTAX)
    out = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        out.append(reader.read(Delta(piece, [i], 5, i + 1, finish=finish if last else None)))
    calls: list[ToolCall] = []
    for delta in out:
        gather(calls, delta.calls)
    return out, calls


def _chars(text: str) -> list[str]:
    return [*text, ""]


def _text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def test_text_without_calls_passes_through() -> None:
    deltas, calls = _read(["hello ", "<b>world</b>", " a < b"])
    assert _text(deltas) == "hello <b>world</b> a < b"
    assert calls == [] and deltas[-1].finish is Finish.STOP


@pytest.mark.parametrize("split", [_chars, lambda text: [text]], ids=["by char", "whole"])
def test_a_call_becomes_its_name_then_its_arguments(split: Callable[[str], list[str]]) -> None:
    deltas, calls = _read(split(CALL))
    assert _text(deltas) == ""
    assert [c.name for c in calls] == ["add"] and calls[0].done
    assert json.loads(calls[0].arguments) == {"a": 1, "b": [2, '}"']}
    assert calls[0].id.startswith("call_") and len(calls[0].id) > 20
    first = next(p for d in deltas for p in d.calls)
    assert first.name == "add" and first.id == calls[0].id and first.arguments == ""
    assert deltas[-1].finish is Finish.TOOL_CALLS


def test_text_before_calls_then_two_calls() -> None:
    second = CALL.replace('"add"', '"sub"')
    deltas, calls = _read(_chars(f"Let me see. <tool\nx {CALL}\n{second}"))
    assert _text(deltas) == "Let me see. <tool\nx "
    assert [c.name for c in calls] == ["add", "sub"] and all(c.done for c in calls)
    assert len({c.id for c in calls}) == 2
    indexes = sorted({p.index for d in deltas for p in d.calls})
    assert indexes == [0, 1]


def test_text_that_might_start_a_call_is_held_back() -> None:
    reader = ToolCallReader(SYNTAX)
    assert reader.feed("hi <tool") == ("hi ", [])
    assert reader.feed("box>") == ("<toolbox>", [])


def test_a_reply_cut_before_the_name_gives_its_text_back() -> None:
    deltas, calls = _read(["ok ", '<tool_call>{"na'], finish=Finish.LENGTH)
    assert _text(deltas) == 'ok <tool_call>{"na'
    assert calls == [] and deltas[-1].finish is Finish.LENGTH


def test_a_reply_cut_in_the_arguments_keeps_the_call_unfinished() -> None:
    deltas, calls = _read(['<tool_call>{"name": "add", "arguments": {"a": 1'], Finish.LENGTH)
    assert [c.name for c in calls] == ["add"] and not calls[0].done
    assert calls[0].arguments == '{"a": 1'
    assert deltas[-1].finish is Finish.LENGTH


def test_gather_reports_the_calls_each_piece_completes() -> None:
    calls: list[ToolCall] = []
    assert gather(calls, [ToolCallDelta(0, "", "call_1", "f"), ToolCallDelta(0, "{")]) == []
    done = gather(calls, [ToolCallDelta(0, "}", done=True)])
    assert done == [ToolCall("call_1", "f", "{}", True)]
