"""OpenAI response bodies and stream chunks, built from the engine's deltas."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard import __version__
from modelyard.core.tool_calls import ToolCall, gather
from modelyard.fronts.openai_tools import delta_calls, message_calls
from modelyard.spec.generation import Delta, Finish, TokenLogprob

#: OpenAI's `system_fingerprint`: which server build answered (text-generation's client
#: requires one on chat completions).
FINGERPRINT = f"modelyard-{__version__}"

_FINISH = {
    Finish.STOP: "stop",
    Finish.LENGTH: "length",
    Finish.ABORT: "abort",
    Finish.ERROR: "error",
    Finish.TOOL_CALLS: "tool_calls",
}


@dataclass
class _Choice:
    prompt: list[int]
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    #: The log-probability of each prompt token after the first (when asked for).
    prompt_logprobs: list[TokenLogprob] | None = None
    finish: str | None = None
    completion_tokens: int = 0
    cached_tokens: int = 0
    #: Characters of text streamed so far (the next chunk's text offset).
    sent: int = 0
    calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class Asked:
    """What the request asked to see beside the text."""

    #: Log-probabilities of the generated tokens (and of the echoed prompt's).
    logprobs: bool = False
    #: The prompt in front of a completion's text (completions only).
    echo: bool = False
    #: vLLM's `prompt_logprobs` field.
    prompt_logprobs: bool = False


class Choices:
    """The choices of one request (n per prompt) as they accumulate."""

    def __init__(
        self,
        model: str,
        chat: bool,
        prompts: list[list[int]],
        n: int,
        piece: Callable[[int], bytes],
        asked: Asked = Asked(),
        echoes: list[str] | None = None,
    ) -> None:
        self.model = model
        self.echoes = echoes or [""] * len(prompts)
        self.chat = chat
        self.prompts = prompts
        self.n = n
        self.piece = piece
        self.asked = asked
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{os.urandom(12).hex()}"
        self.created = int(time.time())
        self.items = [_Choice(p) for p in prompts for _ in range(n)]

    def add(self, index: int, delta: Delta) -> None:
        choice = self.items[index]
        choice.text.append(delta.text)
        choice.logprobs += delta.logprobs
        choice.completion_tokens = delta.completion_tokens
        choice.cached_tokens = delta.cached_tokens
        if delta.prompt_logprobs is not None:
            choice.prompt_logprobs = delta.prompt_logprobs
        gather(choice.calls, delta.calls)
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

    def response(self) -> dict[str, Any]:
        out = [
            self._chat_choice(i, c) if self.chat else self._completion_choice(i, c)
            for i, c in enumerate(self.items)
        ]
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": out,
            "usage": self.usage(),
        }
        if self.chat and self.asked.prompt_logprobs:  # vLLM: one list for the request
            body["prompt_logprobs"] = self.prompt_logprobs(self.items[0])
        return body

    def _chat_choice(self, index: int, choice: _Choice) -> dict[str, Any]:
        return {
            "index": index,
            "message": _message("".join(choice.text), choice.calls),
            "logprobs": chat_logprobs(choice.logprobs) if self.asked.logprobs else None,
            "finish_reason": choice.finish,
        }

    def echo(self, index: int) -> str:
        return self.echoes[index // self.n] if self.asked.echo else ""

    def _completion_choice(self, index: int, choice: _Choice) -> dict[str, Any]:
        entries = self.entries(choice, choice.logprobs) if self.asked.logprobs else None
        out: dict[str, Any] = {
            "index": index,
            "text": self.echo(index) + "".join(choice.text),
            "logprobs": _legacy(entries, 0) if entries is not None else None,
            "finish_reason": choice.finish,
        }
        if self.asked.prompt_logprobs:
            out["prompt_logprobs"] = self.prompt_logprobs(choice)
        return out

    def entries(
        self, choice: _Choice, generated: list[TokenLogprob], prompt: bool = True
    ) -> list[_Entry]:
        """Legacy logprob entries: the echoed prompt's tokens first (the very first has no
        log-probability), when echoed and `prompt`; then the generated ones."""
        entries: list[_Entry] = []
        if prompt and self.asked.echo and choice.prompt_logprobs is not None:
            entries.append((_text(self.piece(choice.prompt[0])), None, None))
            entries += [_entry(item) for item in choice.prompt_logprobs]
        return entries + [_entry(item) for item in generated]

    def prompt_logprobs(self, choice: _Choice) -> list[dict[str, dict[str, Any]] | None]:
        """vLLM's `prompt_logprobs`: None for the first token, then each token's own entry
        and its alternatives, keyed by token id."""
        out: list[dict[str, dict[str, Any]] | None] = [None]
        for item in choice.prompt_logprobs or []:
            found = {str(t): {"logprob": lp, "decoded_token": _text(b)} for t, b, lp in item.top}
            for rank, key in enumerate(found, 1):
                found[key]["rank"] = rank
            found[str(item.token)] = {
                "logprob": item.logprob,
                "rank": item.rank,
                "decoded_token": _text(item.text),
            }
            out.append(found)
        return out

    def usage_chunk(self) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": self.usage(),
        }


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
        "system_fingerprint": FINGERPRINT,
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
    """A stream chunk; a request's first carries the echoed prompt (and its logprobs)."""
    assert delta is not None
    choice = choices.items[index]
    first = not choice.text
    choices.add(index, delta)
    text = (choices.echo(index) if first else "") + delta.text
    logprobs = None
    if choices.asked.logprobs:
        entries = choices.entries(choice, delta.logprobs, prompt=first)
        logprobs = _legacy(entries, choice.sent) if entries else None
    choice.sent += len(text)
    item: dict[str, Any] = {
        "index": index,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": _FINISH[delta.finish] if delta.finish else None,
    }
    if first and choices.asked.prompt_logprobs:
        item["prompt_logprobs"] = choices.prompt_logprobs(choice)
    chunk: dict[str, Any] = {
        "id": choices.id,
        "object": "text_completion",
        "created": choices.created,
        "model": choices.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [item],
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


#: One legacy logprob entry: the token's text, its log-probability, its top alternatives.
_Entry = tuple[str, float | None, dict[str, float] | None]


def _legacy(entries: list[_Entry], start: int) -> dict[str, Any]:
    """OpenAI's legacy (completions) logprobs; offsets index the answer's text from `start`."""
    offsets, at = [], start
    for token, _, _ in entries:
        offsets.append(at)
        at += len(token)
    return {
        "tokens": [token for token, _, _ in entries],
        "token_logprobs": [logprob for _, logprob, _ in entries],
        "top_logprobs": [top for _, _, top in entries],
        "text_offset": offsets,
    }


def _entry(item: TokenLogprob) -> _Entry:
    return _text(item.text), item.logprob, {_text(t): lp for _, t, lp in item.top}


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
