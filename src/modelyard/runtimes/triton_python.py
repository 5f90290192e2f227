"""Triton Python-backend models, unchanged: a `model.py` defining `class TritonPythonModel`.

The model gets what Triton's stub gives it: `initialize(args)` with Triton's args (the config
as Triton's JSON, the instance's kind, name and device, the repository folder, the version),
`execute(requests)` with one `pb_utils.InferenceRequest` per client request of a batch (sync
or `async def`, run on a private event loop thread as the stub does), and `finalize()`. A
decoupled model (`model_transaction_policy { decoupled: true }`) answers through each
request's response sender, from any thread, until it sends the FINAL flag: those responses
are this runtime's `infer_stream`. A response with `error=` fails its own request only.

The runtime depends only on its path, config and `self.calls`, so a worker process can host
it as well as the server's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import queue
import sys
import threading
import types
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any

from modelyard.errors import (
    Internal,
    InvalidArgument,
    ModelLoadError,
    ModelyardError,
    NotFound,
    Unavailable,
    Unimplemented,
)
from modelyard.runtimes import triton_pb_utils as pb_utils
from modelyard.runtimes.base import Arrays, RequestArrays, ResponseArrays, Runtime, Signature
from modelyard.runtimes.python import import_model_file
from modelyard.runtimes.triton_pb_tensors import bytes_objects
from modelyard.spec.config import TRITON_TO_V2, TensorSpec

MODULE_NAME = "triton_python_backend_utils"
_FINAL = object()  # ends a decoupled request's queue

#: Triton's error codes as modelyard's (Triton answers HTTP with the same statuses).
_TO_ERROR: dict[int, type[ModelyardError]] = {
    pb_utils.TritonError.INTERNAL: Internal,
    pb_utils.TritonError.NOT_FOUND: NotFound,
    pb_utils.TritonError.UNAVAILABLE: Unavailable,
    pb_utils.TritonError.UNSUPPORTED: Unimplemented,
}


class TritonPythonRuntime(Runtime):
    name = "python"
    takes_request_lists = True

    module: types.ModuleType

    def load(self) -> None:
        sys.modules[MODULE_NAME] = pb_utils
        self.module = self._import()
        model_class = getattr(self.module, "TritonPythonModel", None)
        if not isinstance(model_class, type):
            raise ModelLoadError(f"{self.path} does not define class TritonPythonModel")
        if not hasattr(model_class, "execute"):
            raise ModelLoadError(
                f"Python model {self.path} does not implement the `execute` method"
            )
        self._completed = self._auto_complete(model_class)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._outputs = [t["name"] for t in self._completed.get("output", [])]
        # One model object per instance, as Triton has one per stub: an instance's execute
        # never runs twice at once.
        self._models: list[Any] = []
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        pb_utils.register_calls(self.calls)
        try:
            for index in range(max(1, self.config.instance_count)):
                self._models.append(self._start(model_class, index))
        except BaseException:
            self.unload()
            raise
        for model in self._models:
            self._idle.put(model)

    def _start(self, model_class: type, index: int) -> Any:
        model = model_class()
        if hasattr(model, "initialize"):
            try:
                with pb_utils.calling_as(self.calls):
                    self._wait(model.initialize(self._args(index)))
            except Exception as exc:
                raise ModelLoadError(
                    f"TritonPythonModel.initialize() of {self.config.name!r} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return model

    @contextlib.contextmanager
    def _instance(self) -> Iterator[Any]:
        """An idle instance of the model, for one execute (the batcher's slots make sure
        one is free)."""
        model = self._idle.get()
        try:
            yield model
        finally:
            self._idle.put(model)

    def _import(self) -> types.ModuleType:
        for folder in (str(self.path.parent), str(self.path.parent.parent)):
            if folder not in sys.path:
                sys.path.append(folder)  # as Triton: model.py imports modules beside it
        return import_model_file(self.path, f"modelyard_triton_models.{self.config.name}")

    def _auto_complete(self, model_class: type) -> dict[str, Any]:
        """The config in Triton's JSON form, completed by the model's own
        `auto_complete_config` when it has one (inputs, outputs, max_batch_size)."""
        config = self.config.to_triton_json()
        complete = getattr(model_class, "auto_complete_config", None)
        if complete is None:
            return config
        try:
            completed = complete(pb_utils.ModelConfig(json.dumps(config)))
        except Exception as exc:
            raise ModelLoadError(
                f"TritonPythonModel.auto_complete_config() of {self.config.name!r} failed: {exc}"
            ) from exc
        if not isinstance(completed, pb_utils.ModelConfig):
            raise ModelLoadError(
                "auto_complete_config() must return the pb_utils.ModelConfig it was given"
            )
        return completed.as_dict()

    def signature(self) -> Signature | None:
        """Inputs and outputs as `auto_complete_config` completed them (None without one)."""
        if "auto_complete_config" not in vars(type(self._models[0])):
            return None
        batch = [-1] if int(self._completed.get("max_batch_size", 0)) > 0 else []
        return (
            [_spec(t, batch) for t in self._completed.get("input", [])],
            [_spec(t, batch) for t in self._completed.get("output", [])],
        )

    def declared_max_batch_size(self) -> int | None:
        """What `auto_complete_config` left as max_batch_size (None without one)."""
        if "auto_complete_config" not in vars(type(self._models[0])):
            return None
        return int(self._completed.get("max_batch_size", 0))

    def _args(self, index: int) -> dict[str, str]:
        version = self.path.parent.name
        return {
            "model_config": json.dumps(self._completed),
            "model_instance_kind": "CPU",
            "model_instance_name": f"{self.config.name}_0_{index}",
            "model_instance_device_id": "0",
            "model_repository": str(self.path.parent.parent),
            "model_version": version if version.isdigit() else "1",
            "model_name": self.config.name,
        }

    # ---- execute ---------------------------------------------------------------------------

    def infer(self, inputs: Arrays) -> Arrays:
        (result,) = self.infer_many([inputs])
        if isinstance(result, ModelyardError):
            raise result
        return result

    def infer_many(self, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        if self.config.decoupled:
            raise Unimplemented(_decoupled_message(self.config.name))
        sent = [_Collected() for _ in parts]
        requests = [
            self._received(inputs, box.deliver) for inputs, box in zip(parts, sent, strict=True)
        ]
        returned = self._execute(requests)
        if returned is None:  # answered through the response senders
            returned = [box.one() for box in sent]
        if not isinstance(returned, list):
            raise Internal(
                f"Expected a list in the execute return, found type '{type(returned).__name__}'"
            )
        if len(returned) != len(requests):
            raise Internal(
                "Number of InferenceResponse objects do not match the number of "
                f"InferenceRequest objects ({len(requests)} requests, {len(returned)} responses)"
            )
        return [self._answer(response) for response in returned]

    def _received(
        self,
        inputs: Arrays,
        deliver: Callable[[pb_utils.InferenceResponse | None, bool], None],
    ) -> pb_utils.InferenceRequest:
        """A request as execute gets it: its id, parameters and requested outputs when the
        core sent them (RequestArrays), every output of the config otherwise."""
        if not isinstance(inputs, RequestArrays):
            return pb_utils.InferenceRequest.received(inputs, self._outputs, deliver)
        return pb_utils.InferenceRequest.received(
            inputs, inputs.outputs or self._outputs, deliver, inputs.id, inputs.parameters
        )

    def _execute(self, requests: list[pb_utils.InferenceRequest]) -> Any:
        """Call the model's execute (a coroutine on the model's loop thread) and wait."""
        try:
            with self._instance() as model, pb_utils.calling_as(self.calls):
                return self._wait(model.execute(requests))
        except ModelyardError:
            raise
        except Exception as exc:
            raise Internal(_failed(self.config.name, exc)) from exc

    def _answer(self, response: Any) -> Arrays | ModelyardError:
        if not isinstance(response, pb_utils.InferenceResponse):
            return Internal(
                "Expected an 'InferenceResponse' object in the execute function return list, "
                f"found type '{type(response).__name__}'"
            )
        error = response.error()
        if error is not None:
            return _TO_ERROR.get(error.code(), InvalidArgument)(error.message())
        arrays = {t.name(): bytes_objects(t.as_numpy()) for t in response.output_tensors()}
        parameters = json.loads(response.parameters())
        return ResponseArrays(arrays, parameters) if parameters else arrays

    def infer_stream(self, inputs: Arrays) -> Iterator[Arrays]:
        if not self.config.decoupled:
            yield self.infer(inputs)
            return
        responses: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def deliver(response: pb_utils.InferenceResponse | None, final: bool) -> None:
            if response is not None:
                responses.put(response)
            if final:
                responses.put(_FINAL)

        request = self._received(inputs, deliver)
        context = contextvars.copy_context()  # what the calls carry reaches its thread
        threading.Thread(
            target=context.run, args=(self._execute_decoupled, request, responses), daemon=True
        ).start()
        try:
            while (item := responses.get()) is not _FINAL:
                if isinstance(item, BaseException):
                    raise item
                answer = self._answer(item)
                if isinstance(answer, ModelyardError):
                    raise answer
                yield answer
        finally:
            request.get_response_sender().cancelled = True  # the consumer has gone

    def _execute_decoupled(
        self, request: pb_utils.InferenceRequest, responses: queue.SimpleQueue[Any]
    ) -> None:
        """On its own thread: execute returns at once or when it has sent everything; an
        error before the FINAL flag ends the request with that error."""
        try:
            with self._instance() as model, pb_utils.calling_as(self.calls):
                returned = self._wait(model.execute([request]))
            if returned is not None:
                raise Internal(
                    f"Python model '{self.config.name}' is using the decoupled mode and the "
                    "execute function must return None."
                )
        except Exception as exc:
            if not request.get_response_sender().closed:
                error = (
                    exc
                    if isinstance(exc, ModelyardError)
                    else Internal(_failed(self.config.name, exc))
                )
                responses.put(error)

    # ---- the model's event loop (async execute) --------------------------------------------

    def _wait(self, result: Any) -> Any:
        if asyncio.iscoroutine(result):
            return self._submit(result).result()
        return result

    def _submit(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name=f"triton-{self.config.name}", daemon=True
                ).start()
        context = contextvars.copy_context()  # BLS's calls, and the calls' own context
        return asyncio.run_coroutine_threadsafe(_in_context(coroutine, context), self._loop)

    def unload(self) -> None:
        try:
            for model in self._models:
                if hasattr(model, "finalize"):
                    with pb_utils.calling_as(self.calls):
                        self._wait(model.finalize())
        finally:
            pb_utils.forget_calls(self.calls)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
            sys.modules.pop(self.module.__name__, None)


class _Collected:
    """What a non-decoupled model sent through a request's response sender (Triton lets it
    answer that way: one response, with the FINAL flag)."""

    def __init__(self) -> None:
        self.responses: list[pb_utils.InferenceResponse] = []

    def deliver(self, response: pb_utils.InferenceResponse | None, final: bool) -> None:
        if response is not None:
            self.responses.append(response)

    def one(self) -> pb_utils.InferenceResponse | None:
        return self.responses[0] if len(self.responses) == 1 else None


async def _in_context(coroutine: Coroutine[Any, Any, Any], context: contextvars.Context) -> Any:
    """Run model code on the model's loop with the context variables of the thread that
    called it (this task has its own copy of the loop's context, so setting them is local)."""
    for variable, value in context.items():
        variable.set(value)
    return await coroutine


def _spec(tensor: dict[str, Any], batch: list[int]) -> TensorSpec:
    datatype = TRITON_TO_V2.get(str(tensor.get("data_type")))
    if datatype is None:
        raise ModelLoadError(f"auto_complete_config: tensor {tensor} has no known data_type")
    dims = [int(d) for d in tensor.get("dims", [])]
    return TensorSpec(str(tensor["name"]), datatype, batch + dims, bool(tensor.get("optional")))


def _failed(name: str, exc: BaseException) -> str:
    return (
        f"Failed to process the request(s) for model '{name}', message: {type(exc).__name__}: {exc}"
    )


def _decoupled_message(name: str) -> str:
    return (
        f"model {name!r} is decoupled (model_transaction_policy decoupled: true) and may send "
        "any number of responses: call it with gRPC ModelStreamInfer or POST "
        f"/v2/models/{name}/generate_stream"
    )
