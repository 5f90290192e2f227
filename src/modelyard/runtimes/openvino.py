"""OpenVINO IR models (`model.xml` + `model.bin`, OVMS's native format and Triton's `openvino`
backend) compiled for the CPU by OpenVINO.

One compiled model per version, and one infer request per instance: an execution takes a free
request, runs it (OpenVINO releases the GIL) and gives it back, so `instance_group` count
executions run side by side in the streams the performance hint made. Inputs, outputs,
datatypes and dynamic dimensions come from the IR itself when the config is silent.

Config parameters (Triton's OpenVINO backend names; OVMS's `plugin_config` keys arrive as the
same parameters):
  PERFORMANCE_HINT        LATENCY (one stream, every thread on each request) or THROUGHPUT
                          (streams for `instance_group` count requests at once); the advisor
                          picks it from the goal, LATENCY when nothing does
  INFERENCE_NUM_THREADS   threads for inference in all (0: OpenVINO's default, every core)
  NUM_STREAMS             streams, when the hint's own choice is not wanted (a number or AUTO)
  SKIP_OV_DYNAMIC_BATCHSIZE  YES keeps an IR's fixed batch dimension even when the config
                          batches (by default it is made dynamic, as Triton's backend does)
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import openvino as ov

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime, Signature, log, warn_unknown_parameters
from modelyard.spec.config import TensorSpec
from modelyard.tensors import OV_TYPES, numpy_dtype

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
_NAMES = ("PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "SKIP_OV_DYNAMIC_BATCHSIZE")
_OWN_PARAMETERS = {*_NAMES, *(name.lower() for name in _NAMES)}


def parameter(params: dict[str, str], name: str, default: str = "") -> str:
    """A parameter in lower case or under Triton's upper-case name (the lower-case one first:
    the advisor fills only the upper-case name, and a config's own setting wins)."""
    return params.get(name.lower(), params.get(name, default)).strip()


def compile_options(params: dict[str, str], instances: int) -> dict[str, str]:
    """The CPU plugin's properties for a model's parameters and instance count."""
    hint = parameter(params, "PERFORMANCE_HINT", "LATENCY").upper()
    if hint not in HINTS:
        raise ModelLoadError(f"PERFORMANCE_HINT must be one of {', '.join(HINTS)}, not {hint!r}")
    options = {"PERFORMANCE_HINT": hint}
    if hint != "LATENCY":  # streams for as many requests as the model runs at once
        options["PERFORMANCE_HINT_NUM_REQUESTS"] = str(max(1, instances))
    threads = parameter(params, "INFERENCE_NUM_THREADS", "0")
    if not threads.isdigit():
        raise ModelLoadError(f"INFERENCE_NUM_THREADS must be a whole number, got {threads!r}")
    if int(threads) > 0:
        options["INFERENCE_NUM_THREADS"] = threads
    streams = parameter(params, "NUM_STREAMS")
    if streams:
        options["NUM_STREAMS"] = streams.upper()
    return options


class OpenVinoRuntime(Runtime):
    name = "openvino"
    inline_safe = True

    def load(self) -> None:
        params = self.config.parameters
        warn_unknown_parameters("openvino", self.config.name, params, _OWN_PARAMETERS)
        options = compile_options(params, self.config.instance_count)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
            self._batch_dynamically(model)
            self.compiled = core.compile_model(model, "CPU", options)
        except RuntimeError as exc:  # OpenVINO's errors are RuntimeErrors with its message
            raise ModelLoadError(f"OpenVINO cannot load {self.path.name}: {_message(exc)}") from exc
        self._signature = (
            [_spec(port) for port in self.compiled.inputs],
            [_spec(port) for port in self.compiled.outputs],
        )
        self._outputs = [spec.name for spec in self._signature[1]]
        self._requests: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        for _ in range(max(1, self.config.instance_count)):
            self._requests.put(self.compiled.create_infer_request())
        self._warm_up()

    def signature(self) -> Signature:
        return self._signature

    def infer(self, inputs: Arrays) -> Arrays:
        request = self._requests.get()
        try:
            results = request.infer({n: np.ascontiguousarray(a) for n, a in inputs.items()})
        except RuntimeError as exc:
            raise InvalidArgument(f"OpenVINO rejected the inputs: {_message(exc)}") from exc
        finally:
            self._requests.put(request)
        return dict(zip(self._outputs, results.to_tuple(), strict=True))

    def unload(self) -> None:
        self.__dict__.pop("compiled", None)
        self.__dict__.pop("_requests", None)

    def _warm_up(self) -> None:
        """One inference on zeros (dynamic dimensions as 1) before serving: OpenVINO's CPU
        plugin unpacks FP16-compressed weights at a model's first inference, which would make
        the first client wait (seconds for a large model) and the memory grow after the load.
        A model that refuses zeros of that shape simply pays it at its first request."""
        zeros = {
            spec.name: np.zeros([max(d, 1) for d in spec.dims], numpy_dtype(spec.datatype))
            for spec in self._signature[0]
        }
        try:
            self.infer(zeros)
        except InvalidArgument as exc:
            log.debug("model %s: no warm-up inference: %s", self.config.name, exc.message)

    def _batch_dynamically(self, model: ov.Model) -> None:
        """A config that batches an IR whose first dimension is fixed gets it made dynamic,
        as Triton's OpenVINO backend does (SKIP_OV_DYNAMIC_BATCHSIZE=YES keeps it)."""
        skip = parameter(self.config.parameters, "SKIP_OV_DYNAMIC_BATCHSIZE").upper()
        if self.config.max_batch_size <= 0 or skip in ("YES", "TRUE", "1"):
            return
        shapes = {}
        for port in model.inputs:
            shape = port.get_partial_shape()
            if shape.rank.is_static and len(shape) > 0 and shape[0].is_static:
                shape[0] = ov.Dimension(-1)
                shapes[port] = shape
        if shapes:
            model.reshape(shapes)


def _spec(port: Any) -> TensorSpec:
    names = port.get_names()
    name = min(names) if names else port.get_node().get_friendly_name()
    datatype = OV_TYPES.get(port.get_element_type().get_type_name())
    if datatype is None:
        raise ModelLoadError(
            f"tensor {name!r} has type {port.get_element_type()}, which is not supported"
        )
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        raise ModelLoadError(f"tensor {name!r} has no fixed rank; reshape the IR first")
    dims = [d.get_length() if d.is_static else -1 for d in shape]
    return TensorSpec(name, datatype, dims)


def _message(exc: BaseException) -> str:
    """OpenVINO's message without its source-file trail (`Exception from src/...`)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (kept or lines or [type(exc).__name__])[-1]
