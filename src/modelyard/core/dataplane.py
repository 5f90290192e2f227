"""The protocol-neutral data plane every front calls: find the model, validate, run it on a
worker thread, record statistics. No web framework and no gRPC in here."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import Any

from modelyard.core import pipeline
from modelyard.core.llm import LLMService
from modelyard.core.models import ModelService, ServedModel
from modelyard.core.types import InferRequest, InferResponse, RequestedOutput
from modelyard.errors import Internal, ModelyardError, Unavailable, Unimplemented
from modelyard.runtimes import Arrays, RequestArrays, ResponseArrays
from modelyard.spec.calls import call_depth
from modelyard.spec.pipeline import LATEST, Step

log = logging.getLogger("modelyard.dataplane")

# Triton's platform names for metadata, so existing clients see what they expect.
PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "python": "python",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}


#: Request parameters an ensemble passes on to each step's request.
STEP_PARAMETERS = ("priority", "timeout")


class DataPlane:
    def __init__(self, models: ModelService, llm: LLMService, executor: Executor) -> None:
        self.models = models
        self.llm = llm
        self.executor = executor

    # ---- inference -------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        async with self.models.lease(request.model, request.version) as model:
            return await self._infer_on(model, request)

    async def _infer_on(self, model: ServedModel, request: InferRequest) -> InferResponse:
        """`request` on `model`, a version the caller holds leased."""
        if model.config.decoupled:
            raise Unimplemented(_decoupled(model.name))
        start = time.perf_counter_ns()
        try:
            contract = model.contract
            rows = contract.check(request.inputs)
            if request.outputs:
                contract.check_requested(request.outputs)
            if model.engine is not None:  # a text generator: its engine, never a worker
                results = await self.llm.infer(model, request.inputs, request.parameters)
                timing = (0, 0, time.perf_counter_ns() - start, 0)
                model.stats.record_execution(rows, *timing[1:])
            elif model.pipeline is not None:  # an ensemble: its steps, as a DAG
                results = await self._pipeline(model, request)
                timing = (0, 0, time.perf_counter_ns() - start, 0)
                model.stats.record_execution(rows, *timing[1:])
            elif model.batcher is None:
                raise Unavailable(f"model {model.name!r} is not serving yet")
            else:
                results, timing = await model.batcher.submit(
                    _inputs(model, request), rows, request.parameters, request.depth
                )
            outputs = contract.select(results, request.outputs)
        except BaseException as exc:
            model.stats.record_failure(time.perf_counter_ns() - start)
            if not isinstance(exc, ModelyardError | asyncio.CancelledError):
                log.exception("model %s failed", model.name)
                raise Internal(f"model {model.name!r} failed: {exc!r}") from exc
            raise
        model.stats.record_success(time.perf_counter_ns() - start, *timing)
        return InferResponse(
            model.name, str(model.version), outputs, request.id, _parameters(results)
        )

    async def generate(self, request: InferRequest) -> InferResponse:
        """One response from any model (Triton's generate): a decoupled model must send
        exactly one for this request."""
        async with self.models.lease(request.model, request.version) as model:
            decoupled = model.config.decoupled
        if not decoupled:
            return await self.infer(request)
        async with contextlib.aclosing(self.infer_stream(request)) as stream:
            responses = [response async for response in stream]
        if len(responses) != 1:
            raise Internal(
                f"generate expects the model to produce exactly 1 response, it sent "
                f"{len(responses)}; use generate_stream for a model that sends any number"
            )
        return responses[0]

    async def infer_stream(self, request: InferRequest) -> AsyncGenerator[InferResponse, None]:
        """Every response a (possibly decoupled) model produces for one request, as produced."""
        async with self.models.lease(request.model, request.version) as model:
            rows = model.contract.check(request.inputs)
            model.contract.check_requested(request.outputs)
            start = time.perf_counter_ns()
            try:
                async with self._stream(model, request) as stream:
                    queued = time.perf_counter_ns()
                    async for outputs in stream:
                        selected = model.contract.select(outputs, request.outputs)
                        parameters = _parameters(outputs)
                        yield InferResponse(
                            model.name, str(model.version), selected, request.id, parameters
                        )
                done = time.perf_counter_ns()
                model.stats.record_execution(rows, 0, done - queued, 0)
                model.stats.record_success(done - start, queued - start, 0, done - queued, 0)
            except BaseException:
                model.stats.record_failure(time.perf_counter_ns() - start)
                raise

    @contextlib.asynccontextmanager
    async def _stream(
        self, model: ServedModel, request: InferRequest
    ) -> AsyncIterator[AsyncGenerator[Arrays, None]]:
        """The model's responses: a text generator's deltas from its engine, or the runtime's
        iterator pulled on a worker thread inside one of the model's instance slots."""
        if model.engine is not None:
            stream = self.llm.infer_stream(model, request.inputs, request.parameters)
            async with contextlib.aclosing(stream) as out:
                yield out
            return
        if model.pipeline is not None:
            yield self._pipeline_once(model, request)
            return
        if model.batcher is None:
            raise Unavailable(f"model {model.name!r} is not serving yet")
        call_depth.set(request.depth)  # this request's task runs the stream
        runtime = model.runtime
        assert runtime is not None  # a model with a batcher has a runtime
        pulled = (
            runtime.infer_stream_async(_inputs(model, request))
            if runtime.asynchronous
            else self._pull(model, request)
        )
        async with model.batcher.slots, contextlib.aclosing(pulled) as out:
            yield out

    async def _pull(
        self, model: ServedModel, request: InferRequest
    ) -> AsyncGenerator[Arrays, None]:
        """Pull the runtime's iterator on a worker thread, one item at a time; the slot is held
        until the worker's current step ends, even if the consumer goes away."""
        loop = asyncio.get_running_loop()
        runtime = model.runtime
        assert runtime is not None  # a model with a batcher has a runtime
        iterator = iter(runtime.infer_stream(_inputs(model, request)))
        context = contextvars.copy_context()  # the call depth, for calls the model makes
        while True:
            step = loop.run_in_executor(self.executor, context.run, _step, iterator)
            try:
                item = await asyncio.shield(step)
            except asyncio.CancelledError:
                await asyncio.wait([step])  # keep the instance slot until the worker is done
                raise
            if item is None:
                return
            yield item

    # ---- pipelines ---------------------------------------------------------------------------

    async def _pipeline(self, model: ServedModel, request: InferRequest) -> Arrays:
        """Run an ensemble's steps, each a request to its model through `infer`; the step
        models stay leased (never evicted) until the last step ends."""
        assert model.pipeline is not None
        spec = model.pipeline
        params = {k: v for k, v in request.parameters.items() if k in STEP_PARAMETERS}

        leased: list[ServedModel] = []

        async def step(index: int, step: Step, inputs: Arrays) -> Arrays:
            outputs = [RequestedOutput(name) for name in step.outputs]
            call = InferRequest(
                step.model, inputs, None, request.id, outputs, dict(params), request.depth
            )
            try:
                return (await self._infer_on(leased[index], call)).outputs
            except ModelyardError as exc:
                raise pipeline.step_error(model.name, index, step, exc) from exc

        async with contextlib.AsyncExitStack() as held:
            for index, each in enumerate(spec.steps):
                version = None if each.version == LATEST else str(each.version)
                try:
                    lease = self.models.lease(each.model, version)
                    leased.append(await held.enter_async_context(lease))
                except ModelyardError as exc:
                    raise pipeline.step_error(model.name, index, each, exc) from exc
            # each step runs on the version leased here, for the whole request (a reload
            # in between changes nothing for it, as for any holder of a lease)
            return await pipeline.run(spec, request.inputs, step)

    async def _pipeline_once(
        self, model: ServedModel, request: InferRequest
    ) -> AsyncGenerator[Arrays, None]:
        """An ensemble's one response, for a streaming call."""
        yield await self._pipeline(model, request)

    # ---- metadata --------------------------------------------------------------------------

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.models.get(name, version)
        config = model.config
        batch = [-1] if config.max_batch_size > 0 else []
        entry = self.models.entry(name)
        return {
            "name": name,
            "versions": [str(v) for v in sorted(entry.versions)],
            "platform": config.platform
            or PLATFORMS.get(config.runtime or "", config.runtime or ""),
            "inputs": [
                {"name": s.name, "datatype": s.datatype, "shape": batch + s.dims}
                for s in config.inputs
            ],
            "outputs": [
                {"name": s.name, "datatype": s.datatype, "shape": batch + s.dims}
                for s in config.outputs
            ],
            "parameters": {
                "runtime": config.runtime or "",
                **{f"reason.{k}": v for k, v in config.reasons.items()},
            },
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self.models.get(name, version).config.to_triton_json()

    def statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[dict[str, Any]]:
        if name is None:
            models = self.models.loaded()
        elif version:
            models = [self.models.get(name, version)]
        else:
            entry = self.models.entry(name)
            models = list(entry.versions.values())
        for ensemble in [m for m in models if m.pipeline is not None] if name else []:
            models += self._steps_of(ensemble, models)
        return [m.stats.to_json(m.name, str(m.version)) for m in models]

    def _steps_of(self, ensemble: ServedModel, listed: list[ServedModel]) -> list[ServedModel]:
        """The loaded versions an ensemble's steps run on (Triton lists an ensemble's
        statistics with its composing models')."""
        assert ensemble.pipeline is not None
        out = []
        for step in ensemble.pipeline.steps:
            version = None if step.version == LATEST else str(step.version)
            with contextlib.suppress(ModelyardError):
                found = self.models.get(step.model, version)
                if found not in listed and found not in out:
                    out.append(found)
        return out


def _step(iterator: Iterator[Arrays]) -> Arrays | None:
    return next(iterator, None)


def _decoupled(name: str) -> str:
    return (
        f"model {name!r} is decoupled (model_transaction_policy decoupled: true): it may send "
        "any number of responses per request, so it answers gRPC ModelStreamInfer and POST "
        f"/v2/models/{name}/generate_stream, not a single-response infer"
    )


def _parameters(results: Arrays) -> dict[str, Any]:
    """The parameters a model set on its response (Triton's Python backend), else none."""
    return results.parameters if isinstance(results, ResponseArrays) else {}


#: Request parameters the server reads itself; the rest reach models that read parameters.
_SERVER_PARAMETERS = frozenset({"priority", "timeout", "binary_data_output"})


def _inputs(model: ServedModel, request: InferRequest) -> Arrays:
    """The request's inputs, with its id, parameters and requested outputs for a runtime that
    reads them (Triton's Python backend)."""
    if model.runtime is None or not model.runtime.takes_request_lists:
        return request.inputs
    parameters = {k: v for k, v in request.parameters.items() if k not in _SERVER_PARAMETERS}
    outputs = [o.name for o in request.outputs or ()]
    return RequestArrays(request.inputs, request.id or "", parameters, outputs)
