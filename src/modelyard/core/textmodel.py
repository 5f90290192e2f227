"""The seam between the LLM plane and a runtime that serves a language model: a runtime that
generates text owns an `Engine` over its `Backend`; one that embeds text answers `embed`."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.core.chat import ChatTemplate
    from modelyard.core.engine import Engine


class TextModel(abc.ABC):
    """Mixed into a `Runtime` whose model reads and writes text."""

    #: The generation engine (None for embedding-only models).
    engine: Engine | None = None
    #: The chat template (None when the model cannot chat).
    template: ChatTemplate | None = None
    #: Tokens one sequence may hold.
    n_ctx: int = 0

    @property
    def embedding(self) -> bool:
        """Whether the model serves embeddings."""
        return False

    @abc.abstractmethod
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids for `text` (with BOS where the model wants it); `special` also parses
        special-token text such as <|im_start|>."""

    @abc.abstractmethod
    def detokenize(self, tokens: list[int]) -> str: ...

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """L2-normalised embeddings of `texts` and the tokens read (blocking: call it on a
        worker thread)."""
        raise NotImplementedError

    def grammar(self, kind: str, schema: Any = None) -> str:
        """A grammar the runtime's sampler enforces for structured output: `kind` "json"
        (any JSON object) or "json_schema" (`schema`, a JSON Schema dict)."""
        from modelyard.errors import InvalidArgument

        raise InvalidArgument("this model's runtime does not support structured output")

    def details(self) -> dict[str, Any]:
        """Facts about the model for listings: family, parameter count, quantization..."""
        return {}
