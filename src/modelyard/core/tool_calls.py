"""Read tool calls out of a reply as its text arrives, for every front: text before the first
call stays text; each call (`start {"name": ..., "arguments": {...}} end`, as the grammar
writes it) becomes pieces — its id and name as soon as the name is read, then its arguments'
JSON text as it comes, the last piece marked `done`. A reply that stops after calls finishes
with `Finish.TOOL_CALLS`.

Text that only might be the start of a call is held back until it is known; what turns out
not to be a call (a reply cut short before the call's name) is given back as text.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

import orjson

from modelyard.spec.generation import Delta, Finish, ToolCallDelta, ToolSyntax


def new_id() -> str:
    return f"call_{os.urandom(12).hex()}"


class ToolCallReader:
    """One reply's text, read into its text and its tool calls."""

    def __init__(self, syntax: ToolSyntax) -> None:
        self.syntax = syntax
        self._head = re.compile(
            r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*'
            + re.escape(orjson.dumps(syntax.arguments).decode())
            + r"\s*:\s*"
        )
        self._tail = re.compile(r"\s*\}\s*" + re.escape(syntax.end))
        self._buffer = ""
        self._state = self._text
        self._value = _JsonValue()
        #: Calls whose arguments are whole (the index of the call being read).
        self.complete = 0

    def read(self, delta: Delta) -> Delta:
        """`delta` with its text split into text and calls (`finish`: TOOL_CALLS when it
        stopped after whole calls)."""
        text, calls = self.feed(delta.text)
        finish = delta.finish
        if finish is not None:
            text += self.close()
            if finish is Finish.STOP and self.complete:
                finish = Finish.TOOL_CALLS
        return dataclasses.replace(delta, text=text, calls=calls, finish=finish)

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """The text and the call pieces that `text`, added to what is held, makes known."""
        self._buffer += text
        out_text: list[str] = []
        out_calls: list[ToolCallDelta] = []
        while self._buffer and self._state(out_text, out_calls):
            pass
        return "".join(out_text), out_calls

    def close(self) -> str:
        """The text left once the reply ended: held text, or a call cut before its name."""
        rest, self._buffer = self._buffer, ""
        if self._state == self._call_head:
            return self.syntax.start + rest
        return self._between(rest) if self._state == self._text else ""

    # ---- states: each consumes from the buffer and says whether to go on ----------------------

    def _text(self, text: list[str], calls: list[ToolCallDelta]) -> bool:
        start = self.syntax.start
        found = self._buffer.find(start)
        if found < 0:
            keep = _partial_end(self._buffer, start)
            ready = self._buffer[: len(self._buffer) - keep]
            self._buffer = self._buffer[len(ready) :]
            text.append(self._between(ready))
            return False
        text.append(self._between(self._buffer[:found]))
        self._buffer = self._buffer[found + len(start) :]
        self._state = self._call_head
        return True

    def _between(self, text: str) -> str:
        """Text, except the line breaks between calls."""
        return text if not self.complete or text.strip() else ""

    def _call_head(self, text: list[str], calls: list[ToolCallDelta]) -> bool:
        match = self._head.match(self._buffer)
        if match is None:
            return False
        name = orjson.loads(f'"{match.group(1)}"')
        calls.append(ToolCallDelta(self.complete, "", new_id(), name))
        self._buffer = self._buffer[match.end() :]
        self._value = _JsonValue()
        self._state = self._arguments
        return True

    def _arguments(self, text: list[str], calls: list[ToolCallDelta]) -> bool:
        taken = self._value.feed(self._buffer)
        done = self._value.done
        calls.append(ToolCallDelta(self.complete, self._buffer[:taken], done=done))
        self._buffer = self._buffer[taken:]
        if done:
            self.complete += 1
            self._state = self._call_tail
        return done

    def _call_tail(self, text: list[str], calls: list[ToolCallDelta]) -> bool:
        match = self._tail.match(self._buffer)
        if match is None:
            return False
        self._buffer = self._buffer[match.end() :]
        self._state = self._text
        return True


class _JsonValue:
    """Finds where a JSON object or array ends, fed a piece at a time."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = False
        self.in_string = False
        self.escaped = False
        self.done = False

    def feed(self, text: str) -> int:
        """How many characters of `text` belong to the value (all of them until it ends)."""
        for i, char in enumerate(text):
            self._step(char)
            if self.done:
                return i + 1
        return len(text)

    def _step(self, char: str) -> None:
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = False
        elif char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
            self.started = True
        elif char in "}]":
            self.depth -= 1
            self.done = self.started and self.depth == 0


def _partial_end(text: str, marker: str) -> int:
    """Length of the longest end of `text` that begins `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


@dataclass
class ToolCall:
    """A whole call, gathered from its pieces."""

    id: str
    name: str
    arguments: str = ""
    done: bool = False


def gather(calls: list[ToolCall], pieces: list[ToolCallDelta]) -> list[ToolCall]:
    """Add `pieces` to `calls` (in place); return the calls they completed."""
    completed = []
    for piece in pieces:
        if piece.index == len(calls):
            calls.append(ToolCall(piece.id or new_id(), piece.name or ""))
        call = calls[piece.index]
        call.arguments += piece.arguments
        if piece.done:
            call.done = True
            completed.append(call)
    return completed
