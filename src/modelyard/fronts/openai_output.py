"""OpenAI response bodies and stream chunks, built from the engine's deltas."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.tool_calls import ToolCall, gather
from modelyard.fronts.openai_tools import delta_calls, message_calls
from modelyard.spec.generation import Delta, Finish, TokenLogprob

_FINISH = {
    Finish.STOP: "stop",
    Finish.LENGTH: "length",
    Finish.ABORT: "abort",
    Finish.ERROR: "error",
    Finish.TOOL_CALLS: "tool_calls",
}


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    calls: list[ToolCall] = field(default_factory=list)


class Choices:
    """The choices of one request (n per prompt) as they accumulate."""

    def __init__(
        self,
        model: str,
        chat: bool,
        prompts: list[list[int]],
        n: int,
        detokenize: Callable[[list[int]], str],
    ) -> None:
        self.model = model
        self.chat = chat
        self.prompts = prompts
        self.n = n
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{os.urandom(12).hex()}"
        self.created = int(time.time())
        self.items = [_Choice(prompt_tokens=len(p)) for p in prompts for _ in range(n)]
        self.want_logprobs = False

    def add(self, index: int, delta: Delta) -> None:
        choice = self.items[index]
        choice.text.append(delta.text)
        choice.logprobs += delta.logprobs
        choice.completion_tokens = delta.completion_tokens
        choice.cached_tokens = delta.cached_tokens
        gather(choice.calls, delta.calls)
        if delta.logprobs:
            self.want_logprobs = True
        if delta.finish is not None:
            choice.finish = _FINISH[delta.finish]

    def usage(self) -> dict[str, Any]:
        prompt = sum(len(p) for p in self.prompts)
        completion = sum(c.completion_tokens for c in self.items)
        cached = sum(c.cached_tokens for c in self.items[:: self.n])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def response(self, echoes: list[str]) -> dict[str, Any]:
        out = []
        for index, choice in enumerate(self.items):
            text = "".join(choice.text)
            logprobs = self._logprobs(choice.logprobs) if self.want_logprobs else None
            if self.chat:
                out.append(
                    {
                        "index": index,
                        "message": _message(text, choice.calls),
                        "logprobs": logprobs,
                        "finish_reason": choice.finish,
                    }
                )
            else:
                echo = echoes[index // self.n] if echoes else ""
                out.append(
                    {
                        "index": index,
                        "text": echo + text,
                        "logprobs": logprobs,
                        "finish_reason": choice.finish,
                    }
                )
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": out,
            "usage": self.usage(),
        }

    def usage_chunk(self) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
        }

    def _logprobs(self, items: list[TokenLogprob]) -> dict[str, Any]:
        return chat_logprobs(items) if self.chat else completion_logprobs(items)


def chat_chunk(
    choices: Choices, index: int, delta: Delta | None, role: bool = False, usage: bool = False
) -> dict[str, Any]:
    if delta is not None:
        choices.add(index, delta)
    message: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
    logprobs = None
    finish = None
    if delta is not None:
        if delta.text or (delta.tokens and not choices.items[index].calls):
            message["content"] = delta.text
        calls = delta_calls(delta.calls)
        if calls:
            message["tool_calls"] = calls
        logprobs = chat_logprobs(delta.logprobs) if delta.logprobs else None
        finish = _FINISH[delta.finish] if delta.finish is not None else None
    chunk = {
        "id": choices.id,
        "object": "chat.completion.chunk",
        "created": choices.created,
        "model": choices.model,
        "choices": [
            {"index": index, "delta": message, "logprobs": logprobs, "finish_reason": finish}
        ],
    }
    if usage:
        chunk["usage"] = None
    return chunk


def completion_chunk(
    choices: Choices, index: int, delta: Delta | None, role: bool = False, usage: bool = False
) -> dict[str, Any]:
    assert delta is not None
    choices.add(index, delta)
    chunk = {
        "id": choices.id,
        "object": "text_completion",
        "created": choices.created,
        "model": choices.model,
        "choices": [
            {
                "index": index,
                "text": delta.text,
                "logprobs": completion_logprobs(delta.logprobs) if delta.logprobs else None,
                "finish_reason": _FINISH[delta.finish] if delta.finish else None,
            }
        ],
    }
    if usage:
        chunk["usage"] = None
    return chunk


def _message(text: str, calls: list[ToolCall]) -> dict[str, Any]:
    if not calls:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text or None, "tool_calls": message_calls(calls)}


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": _text(i.text),
                "logprob": i.logprob,
                "bytes": list(i.text),
                "top_logprobs": [
                    {"token": _text(t), "logprob": lp, "bytes": list(t)} for _, t, lp in i.top
                ],
            }
            for i in items
        ]
    }


def completion_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "tokens": [_text(i.text) for i in items],
        "token_logprobs": [i.logprob for i in items],
        "top_logprobs": [{_text(t): lp for _, t, lp in i.top} for i in items],
        "text_offset": [],
    }


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
