"""Tool calls in OpenAI's shapes: whole calls in a message, and the pieces of calls in stream
chunks (`delta.tool_calls`: a call's index, id, type and name first, then fragments of its
arguments' JSON text), as the openai client accumulates them."""

from __future__ import annotations

from typing import Any

from modelyard.core.tool_calls import ToolCall
from modelyard.spec.generation import ToolCallDelta


def message_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def delta_calls(pieces: list[ToolCallDelta]) -> list[dict[str, Any]]:
    return [_piece(p) for p in pieces if p.name is not None or p.arguments]


def _piece(piece: ToolCallDelta) -> dict[str, Any]:
    if piece.name is None:
        return {"index": piece.index, "function": {"arguments": piece.arguments}}
    return {
        "index": piece.index,
        "id": piece.id,
        "type": "function",
        "function": {"name": piece.name, "arguments": piece.arguments},
    }
