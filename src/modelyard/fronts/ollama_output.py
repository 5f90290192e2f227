"""Ollama's response objects: stream chunks, the final chunk with its counts and durations
(nanoseconds), NDJSON lines, timestamps."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.core.tool_calls import ToolCall, gather
from modelyard.spec.generation import Delta, Finish, TokenLogprob

_DONE_REASON = {
    Finish.STOP: "stop",
    Finish.LENGTH: "length",
    Finish.ABORT: "abort",
    Finish.ERROR: "error",
    Finish.TOOL_CALLS: "stop",
}


def timestamp(epoch: float | None = None) -> str:
    """RFC 3339 in UTC with microseconds, as Ollama writes `created_at`."""
    moment = datetime.datetime.fromtimestamp(
        time.time() if epoch is None else epoch, datetime.timezone.utc
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ndjson(item: dict[str, Any]) -> bytes:
    return orjson.dumps(item) + b"\n"


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


@dataclass
class Timings:
    """Monotonic clock readings of one request, for the final chunk."""

    started: float = field(default_factory=time.monotonic)
    load_s: float = 0.0
    submitted: float = 0.0
    first: float = 0.0
    last: float = 0.0

    def loaded(self) -> None:
        """The model is ready (loaded now or before): generation starts."""
        self.submitted = time.monotonic()
        self.load_s = self.submitted - self.started

    def token(self) -> None:
        self.last = time.monotonic()
        if not self.first:
            self.first = self.last

    def fields(self, prompt_tokens: int, generated: int) -> dict[str, int]:
        end = time.monotonic()
        first = self.first or end
        return {
            "total_duration": _ns(end - self.started),
            "load_duration": _ns(self.load_s),
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": _ns(first - (self.submitted or self.started)),
            "eval_count": generated,
            "eval_duration": _ns((self.last or first) - first),
        }


class Reply:
    """One generation as Ollama shows it: chunks for `/api/generate` (`response`) or
    `/api/chat` (`message`), and the final chunk."""

    def __init__(
        self,
        model: str,
        chat: bool,
        prompt: list[int],
        timings: Timings,
        want_logprobs: bool = False,
    ) -> None:
        self.model = model
        self.chat = chat
        self.prompt = prompt
        self.timings = timings
        self.want_logprobs = want_logprobs
        self.tokens: list[int] = []
        self.text: list[str] = []
        self.logprobs: list[dict[str, Any]] = []
        self.finish = Finish.STOP
        self.generated = 0
        self.calls: list[ToolCall] = []

    def add(self, delta: Delta) -> dict[str, Any] | None:
        """Take one delta; the chunk to stream for it (None when it carries no text and
        completes no tool call)."""
        self.tokens += delta.tokens
        self.generated = delta.completion_tokens
        if delta.finish is not None:
            self.finish = delta.finish
        self.text.append(delta.text)
        logprobs = [_logprob(i) for i in delta.logprobs] if self.want_logprobs else []
        self.logprobs += logprobs
        completed = gather(self.calls, delta.calls)
        if not delta.text and not logprobs and not completed:
            return None
        chunk = self._chunk(delta.text, done=False, calls=completed)
        if logprobs:
            chunk["logprobs"] = logprobs
        return chunk

    def final(self, whole: bool = False) -> dict[str, Any]:
        """The last chunk (`whole`: the one object of a non-streamed reply, with all text
        and tool calls)."""
        calls = [c for c in self.calls if c.done] if whole else []
        chunk = self._chunk("".join(self.text) if whole else "", done=True, calls=calls)
        chunk["done_reason"] = _DONE_REASON[self.finish]
        if not self.chat:
            chunk["context"] = self.prompt + self.tokens
        chunk.update(self.timings.fields(len(self.prompt), self.generated))
        if whole and self.want_logprobs:
            chunk["logprobs"] = self.logprobs
        return chunk

    def failed(self, message: str) -> dict[str, Any]:
        """The last chunk of a stream that broke off: `done`, with the `error`."""
        self.finish = Finish.ERROR
        chunk = self.final()
        chunk["error"] = message
        return chunk

    def _chunk(self, text: str, done: bool, calls: list[ToolCall] | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {"model": self.model, "created_at": timestamp()}
        if self.chat:
            chunk["message"] = {"role": "assistant", "content": text}
            if calls:
                chunk["message"]["tool_calls"] = [_call(c) for c in calls]
        else:
            chunk["response"] = text
        chunk["done"] = done
        return chunk


def loaded_reply(model: str, chat: bool, reason: str) -> dict[str, Any]:
    """The answer to an empty prompt: the model was loaded (`load`) or unloaded (`unload`)."""
    reply: dict[str, Any] = {"model": model, "created_at": timestamp()}
    if chat:
        reply["message"] = {"role": "assistant", "content": ""}
    else:
        reply["response"] = ""
    reply.update(done=True, done_reason=reason)
    return reply


def _call(call: ToolCall) -> dict[str, Any]:
    """A whole call as Ollama writes it: arguments as an object."""
    return {"function": {"name": call.name, "arguments": orjson.loads(call.arguments)}}


def _logprob(item: TokenLogprob) -> dict[str, Any]:
    return {
        "token": _text(item.text),
        "logprob": item.logprob,
        "top_logprobs": [{"token": _text(t), "logprob": lp} for _, t, lp in item.top],
    }


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
