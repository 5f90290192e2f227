"""`ModelCalls` for the models the core serves: a model's calls to other models (Triton's BLS,
modelyard composition) run on the same data plane and LLM service as a client's requests,
through their leases, batchers, engines and statistics, never around them.

Each model gets its own view (`CoreCalls.bound(name)`), which refuses calls to itself (the
call would wait for the instance that makes it). Every call is one level deeper than the
execution that makes it (`spec.calls.call_depth`, carried through batchers and worker
processes); past `MAX_CALL_DEPTH` a call is refused, so models that call each other in a loop
fail with a clear error. `MAX_NESTED` caps how many model-made calls may be in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from modelyard.core.dataplane import DataPlane
from modelyard.core.llm import LLMService
from modelyard.core.sampling import sampling_params
from modelyard.core.types import InferRequest, RequestedOutput
from modelyard.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from modelyard.runtimes import Arrays
from modelyard.spec.calls import MAX_CALL_DEPTH, ModelCalls, call_depth

T = TypeVar("T")

#: Model-made calls that may be in flight at once, server-wide.
MAX_NESTED = 1024


class CoreCalls:
    """What every model served here may call; `bound` gives one model its view."""

    def __init__(self, dataplane: DataPlane, llm: LLMService) -> None:
        self.dataplane = dataplane
        self.llm = llm
        #: The server's event loop (set when the server starts), for `blocking`.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0

    def bound(self, caller: str) -> ModelCalls:
        return BoundCalls(self, caller)


class BoundCalls:
    """One model's calls to the others."""

    def __init__(self, core: CoreCalls, caller: str) -> None:
        self.core = core
        self.caller = caller

    async def infer(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Arrays:
        request = self._request(model, inputs, version, outputs, parameters)
        with self._counted():
            response = await self.core.dataplane.infer(request)
        return response.outputs

    async def infer_stream(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Arrays]:
        request = self._request(model, inputs, version, outputs, parameters)
        with self._counted():
            responses = self.core.dataplane.infer_stream(request)
            async with contextlib.aclosing(responses) as stream:
                async for response in stream:
                    yield response.outputs

    async def generate(self, model: str, prompt: str, **sampling: Any) -> str:
        self._check_target(model)
        with self._counted():
            async with self.core.llm.session(model) as session:
                tokens = await session.tokenize(prompt)
                generation = session.generate([tokens], [sampling_params(sampling)])
                try:
                    return "".join([delta.text async for _, delta in generation])
                finally:
                    await generation.aclose()

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        self._check_target(model)
        if isinstance(texts, str):
            raise InvalidArgument("embed() takes a list of texts, not one string")
        with self._counted():
            async with self.core.llm.session(model) as session:
                vectors, _ = await session.embed(list(texts))
        return vectors

    def blocking(self, call: Awaitable[T]) -> T:
        loop = self.core.loop
        if loop is None:
            raise FailedPrecondition("calls to other models are possible once the server runs")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise FailedPrecondition(
                "blocking() waits from a worker thread; in async code use await"
            )
        waiting = _awaited(call, call_depth.get())  # the depth of the thread's execution
        return asyncio.run_coroutine_threadsafe(waiting, loop).result()

    # ---- helpers ---------------------------------------------------------------------------

    def _request(
        self,
        model: str,
        inputs: Arrays,
        version: str,
        outputs: Sequence[str] | None,
        parameters: Mapping[str, Any] | None,
    ) -> InferRequest:
        depth = self._check_target(model)
        return InferRequest(
            model,
            dict(inputs),
            version or None,
            outputs=None if outputs is None else [RequestedOutput(o) for o in outputs],
            parameters=dict(parameters or {}),
            depth=depth,
        )

    def _check_target(self, model: str) -> int:
        """The depth of a call to `model`, or a clear refusal."""
        if model == self.caller:
            raise InvalidArgument(
                f"model {model!r} called itself; a model may not call itself (the call would "
                "wait for the very instance that makes it)"
            )
        depth = call_depth.get() + 1
        if depth > MAX_CALL_DEPTH:
            raise FailedPrecondition(
                f"model {self.caller!r} called {model!r} {depth} calls deep, past the limit of "
                f"{MAX_CALL_DEPTH}; do these models call each other in a loop?"
            )
        return depth

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        if self.core.in_flight >= MAX_NESTED:
            raise ResourceExhausted(
                f"{MAX_NESTED} calls between models are in flight; models that call each "
                "other in a loop end here"
            )
        self.core.in_flight += 1
        try:
            yield
        finally:
            self.core.in_flight -= 1


async def _awaited(call: Awaitable[T], depth: int) -> T:
    call_depth.set(depth)
    return await call
