"""ONNX models through onnxruntime (the OpenVINO execution provider when it is installed).

Config parameters (config.pbtxt `parameters` or model.yaml `parameters`):
  intra_op_thread_count, inter_op_thread_count  onnxruntime thread pools (0: its default)
  execution_provider       e.g. CPUExecutionProvider, OpenVINOExecutionProvider
  allow_spinning           "1" lets idle onnxruntime threads spin (default "0")
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime
from modelyard.spec.config import TensorSpec

_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}


def _threads_per_instance(instances: int) -> int:
    """Split the cores between instances so N parallel executions do not oversubscribe them
    (0 leaves onnxruntime's default, one thread per core, for a single instance)."""
    if instances <= 1:
        return 0
    return max(1, (os.cpu_count() or 1) // instances)


def choose_providers(requested: str | None) -> list[str]:
    available = ort.get_available_providers()
    if requested:
        if requested not in available:
            raise ModelLoadError(
                f"execution provider {requested!r} is not installed; available: {available}"
            )
        return [requested, "CPUExecutionProvider"]
    if "OpenVINOExecutionProvider" in available:
        return ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntime(Runtime):
    name = "onnx"
    inline_safe = True

    session: ort.InferenceSession

    def load(self) -> None:
        params = self.config.parameters
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(
            params.get("intra_op_thread_count", 0)
        ) or _threads_per_instance(self.config.instance_count)
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", 0))
        options.log_severity_level = 3
        # onnxruntime's pool spins after each run by default, taking the cores the event loop
        # and the other requests need; a server waits on requests, so let the threads sleep.
        spin = params.get("allow_spinning", "0")
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        providers = choose_providers(params.get("execution_provider"))
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime cannot load {self.path.name}: {exc}") from exc
        self._string_inputs = {
            i.name for i in self.session.get_inputs() if i.type == "tensor(string)"
        }

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return (
            [_spec(arg) for arg in self.session.get_inputs()],
            [_spec(arg) for arg in self.session.get_outputs()],
        )

    def infer(self, inputs: Arrays) -> Arrays:
        feed = {
            name: (_as_str(array) if name in self._string_inputs else array)
            for name, array in inputs.items()
        }
        try:
            results = self.session.run(None, feed)
        except (
            ort.capi.onnxruntime_pybind11_state.InvalidArgument,
            ort.capi.onnxruntime_pybind11_state.Fail,
        ) as exc:
            raise InvalidArgument(f"onnxruntime rejected the inputs: {exc}") from exc
        names = [o.name for o in self.session.get_outputs()]
        return {name: _from_ort(value) for name, value in zip(names, results, strict=True)}


def _spec(arg: Any) -> TensorSpec:
    datatype = _ONNX_TYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(f"tensor {arg.name!r} has type {arg.type}, which is not supported")
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape]
    return TensorSpec(arg.name, datatype, dims)


def _as_str(array: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.vectorize(
        lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object]
    )(array)
    return out


def _from_ort(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "OU":
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = [
            v.encode("utf-8") if isinstance(v, str) else v for v in array.reshape(-1)
        ]
        return out
    return array
