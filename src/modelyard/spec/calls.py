"""What a model may call in the server: other models (Triton's BLS, modelyard composition).

The core implements `ModelCalls` over its own data plane and LLM service, so a call from a
model goes through the same leases, batchers, engines and statistics as a call from a client.
A runtime whose model may call others receives one as `Runtime.calls` before it loads; in a
worker process the object is a proxy that sends the call to the server process.

Every method is a coroutine on the server's (or worker's) event loop. Model code that runs on
a thread (a synchronous `execute` or `predict`) uses `blocking`, which waits for a coroutine of
this object from a thread that is not the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import numpy as np

T = TypeVar("T")
Arrays = dict[str, np.ndarray]

#: How deep in calls between models the execution running in this context is: 0 for a
#: client's request, 1 for a call a model made while serving one, and so on. The core sets it
#: around each execution (a batch takes its deepest request's), worker processes carry it both
#: ways, and a call deeper than `MAX_CALL_DEPTH` is refused, so models that call each other in
#: a loop fail with a clear error instead of recursing without end.
call_depth: ContextVar[int] = ContextVar("modelyard_call_depth", default=0)
MAX_CALL_DEPTH = 16


class ModelCalls(Protocol):
    async def infer(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Arrays:
        """One inference on `model` (any kind: tensors in and out, an LLM's text tensors
        included); `outputs` picks some outputs (None: all)."""
        ...

    def infer_stream(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Arrays]:
        """Every response of one request to a decoupled model (or an LLM's text deltas)."""
        ...

    async def generate(self, model: str, prompt: str, **sampling: Any) -> str:
        """A completion of `prompt` by a text generator; `sampling` takes the OpenAI
        completion fields (max_tokens, temperature, stop, seed...)."""
        ...

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings of `texts` from an embedding model."""
        ...

    def blocking(self, call: Awaitable[T]) -> T:
        """Wait for `call` (a coroutine of this object) from a thread that is not the loop."""
        ...
