"""Structured output on the transformers runtime through llguidance (the grammar engine
behind Guidance; its own reader of the model's Hugging Face tokenizer): JSON (any object, or
a JSON Schema) and regular expressions. Each step the guide masks the tokens the grammar
forbids, then accepts the sampled one. Tool calls are refused (400) until their grammar is
written for llguidance; nothing is ever ignored silently."""

from __future__ import annotations

from typing import Any

import torch

from modelyard.errors import Internal, InvalidArgument
from modelyard.spec.generation import Constraint, RegexOutput, StructuredOutput

#: JSON as a model writes it best: no free whitespace between tokens (a small model given
#: the freedom fills it with newlines and tabs).
_COMPACT = {"whitespace_flexible": False}


def _library() -> Any:
    try:
        import llguidance
        import llguidance.hf
        import llguidance.torch
    except ImportError as exc:
        raise InvalidArgument(
            "structured output on the transformers runtime needs llguidance: "
            "pip install 'modelyard[transformers]'"
        ) from exc
    return llguidance


def compile_grammar(structured: Constraint) -> str:
    """llguidance's grammar for `structured`; InvalidArgument saying what is wrong."""
    llg = _library()
    if isinstance(structured, RegexOutput):
        grammar = llg.LLMatcher.grammar_from_regex(structured.pattern)
    elif isinstance(structured, StructuredOutput):
        schema: dict[str, Any] = structured.schema or {"type": "object"}
        options: dict[str, Any] = {**_COMPACT, **(schema.get("x-guidance") or {})}
        try:
            grammar = llg.LLMatcher.grammar_from_json_schema({**schema, "x-guidance": options})
        except (ValueError, TypeError, RuntimeError) as exc:
            raise InvalidArgument(f"the JSON schema cannot be enforced: {exc}") from exc
    else:
        raise InvalidArgument(
            "tool calls are not supported by the transformers runtime yet; serve a GGUF "
            "build of the model for them"
        )
    error = llg.LLMatcher.validate_grammar(grammar)
    if error:
        raise InvalidArgument(f"the structured output cannot be enforced: {error}")
    return str(grammar)


class Guide:
    """One request's grammar state: masks the logits, then follows the sampled token."""

    def __init__(self, tokenizer: Any, grammar: str) -> None:
        self.llg = _library()
        self.vocab = int(tokenizer.vocab_size)
        self.matcher = self.llg.LLMatcher(tokenizer, grammar)
        if self.matcher.is_error():
            raise InvalidArgument(f"the structured output cannot start: {self.matcher.get_error()}")
        self.bitmask = self.llg.torch.allocate_token_bitmask(1, self.vocab)

    def mask(self, scores: torch.Tensor) -> None:
        """Forbidden tokens' scores become -inf (in place); ids past the grammar's vocabulary
        (a model's padded embedding rows) too."""
        self.llg.torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        self.llg.torch.apply_token_bitmask_inplace(scores[: self.vocab], self.bitmask[0])
        scores[self.vocab :] = -torch.inf

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise Internal(f"the grammar refused token {token}: {self.matcher.get_error()}")


def guide_tokenizer(hf_tokenizer: Any) -> Any:
    """llguidance's view of a Hugging Face tokenizer (built once per model)."""
    return _library().hf.from_tokenizer(hf_tokenizer)
