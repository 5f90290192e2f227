"""The core's `ModelCalls`: what a model calls in the server goes through the data plane, so
through the same leases, queues, batchers, engines and statistics as a client's request.

A minimal version for Triton's BLS (runtimes/triton_python.py); the worker branch owns the
final one (depth guard, embeddings, the worker-process proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from modelyard.core.dataplane import DataPlane
from modelyard.core.types import InferRequest, RequestedOutput
from modelyard.errors import InvalidArgument, Unavailable
from modelyard.runtimes import Arrays
from modelyard.spec.generation import SAMPLING_PARAMETERS, TEXT_INPUT, TEXT_OUTPUT

T = TypeVar("T")


class CoreCalls:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the data plane runs on (called on it, at start-up)."""
        self.loop = loop
        self._loop_thread = threading.get_ident()

    async def infer(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Arrays:
        request = _request(model, inputs, version, outputs, parameters)
        return (await self.dataplane.infer(request)).outputs

    async def infer_stream(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Arrays]:
        request = _request(model, inputs, version, outputs, parameters)
        async with contextlib.aclosing(self.dataplane.infer_stream(request)) as responses:
            async for response in responses:
                yield response.outputs

    async def generate(self, model: str, prompt: str, **sampling: Any) -> str:
        inputs = {TEXT_INPUT: _texts([prompt])}
        if sampling:
            inputs[SAMPLING_PARAMETERS] = _texts([json.dumps(sampling)])
        text = (await self.infer(model, inputs))[TEXT_OUTPUT].reshape(-1)[0]
        return text.decode() if isinstance(text, bytes) else str(text)

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        outputs = await self.infer(model, {TEXT_INPUT: _texts(list(texts))})
        vectors: list[list[float]] = outputs["embedding"].tolist()
        return vectors

    def blocking(self, call: Awaitable[T]) -> T:
        if self.loop is None:
            raise Unavailable("the server is not serving yet; models cannot call others now")
        if threading.get_ident() == self._loop_thread:
            raise InvalidArgument(
                "a blocking model call from the server's event loop would never end; "
                "await the call instead"
            )
        return asyncio.run_coroutine_threadsafe(_coroutine(call), self.loop).result()


async def _coroutine(call: Awaitable[T]) -> T:
    return await call


def _request(
    model: str,
    inputs: Arrays,
    version: str,
    outputs: Sequence[str] | None,
    parameters: Mapping[str, Any] | None,
) -> InferRequest:
    return InferRequest(
        model,
        dict(inputs),
        version or None,
        outputs=[RequestedOutput(name) for name in outputs] if outputs else None,
        parameters=dict(parameters or {}),
    )


def _texts(texts: list[str]) -> np.ndarray:
    array = np.empty(len(texts), dtype=object)
    array[:] = [t.encode() for t in texts]
    return array


__all__ = ["CoreCalls"]
