"""TGI's answers from the core's deltas: tokens (`{id, text, logprob, special}`), `details`
(finish reason, generated tokens, seed, prefill, tokens, top tokens, best-of sequences) and
the stream's events. A sequence's text is its tokens' text, as TGI's is: a stop sequence
stays at its end."""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard.spec.generation import Delta, Finish, TokenLogprob

#: (token id) -> (its bytes, whether it is special): the held model's vocabulary.
Vocabulary = Callable[[int], tuple[bytes, bool]]


@dataclass
class Sequence:
    """One generated sequence as it grows."""

    vocabulary: Vocabulary
    prompt: list[int]
    seed: int | None = None
    tokens: list[dict[str, Any]] = field(default_factory=list)
    top_tokens: list[list[dict[str, Any]]] = field(default_factory=list)
    prefill: list[dict[str, Any]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    finish: Finish | None = None
    prompt_tokens: int = 0
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def add(self, delta: Delta) -> list[dict[str, Any]]:
        """Take one delta; return the tokens it brought, in TGI's shape."""
        self.prompt_tokens = delta.prompt_tokens
        if delta.prompt_logprobs is not None and not self.prefill:
            self.prefill = self._prefill(delta.prompt_logprobs)
        new = []
        for i, token in enumerate(delta.tokens):
            scored = delta.logprobs[i] if i < len(delta.logprobs) else None
            new.append(self._token(token, scored))
            if scored is not None and scored.top:
                self.top_tokens.append([self._alternative(t, lp) for t, _, lp in scored.top])
        self.tokens.extend(new)
        if delta.finish is not None:
            self.finish = delta.finish
            self.text.append(self._decoder.decode(b"", final=True))
        return new

    def _token(self, token: int, scored: TokenLogprob | None) -> dict[str, Any]:
        piece, special = self.vocabulary(token)
        text = self._decoder.decode(piece)
        self.text.append(text)
        logprob = _number(scored.logprob) if scored is not None else None
        return {"id": token, "text": text, "logprob": logprob, "special": special}

    def _alternative(self, token: int, logprob: float) -> dict[str, Any]:
        piece, special = self.vocabulary(token)
        text = piece.decode("utf-8", "replace")
        return {"id": token, "text": text, "logprob": _number(logprob), "special": special}

    def _prefill(self, scored: list[TokenLogprob]) -> list[dict[str, Any]]:
        """TGI's `prefill`: every prompt token, the first without a logprob."""
        logprobs = [None, *(_number(s.logprob) for s in scored)]
        return [
            {
                "id": token,
                "text": self.vocabulary(token)[0].decode("utf-8", "replace"),
                "logprob": logprobs[i] if i < len(logprobs) else None,
            }
            for i, token in enumerate(self.prompt)
        ]

    @property
    def generated_text(self) -> str:
        return "".join(self.text)

    @property
    def finish_reason(self) -> str:
        """TGI's `length`, `eos_token` or `stop_sequence`."""
        if self.finish is Finish.LENGTH or not self.tokens:
            return "length"
        return "eos_token" if self.tokens[-1]["special"] else "stop_sequence"

    @property
    def logprob_sum(self) -> float:
        return sum(t["logprob"] or 0.0 for t in self.tokens)

    def details(self, prefill: bool, top: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "finish_reason": self.finish_reason,
            "generated_tokens": len(self.tokens),
            "seed": self.seed,
            "prefill": self.prefill if prefill else [],
            "tokens": self.tokens,
        }
        if top:
            out["top_tokens"] = self.top_tokens
        return out

    def stream_details(self) -> dict[str, Any]:
        return {
            "finish_reason": self.finish_reason,
            "generated_tokens": len(self.tokens),
            "seed": self.seed,
            "input_length": self.prompt_tokens,
        }


def _number(value: float) -> float | None:
    """A logprob as JSON takes it: -inf (a token the sampler had ruled out) as null."""
    return value if math.isfinite(value) else None
