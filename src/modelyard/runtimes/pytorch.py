"""PyTorch models: TorchScript (`model.pt`, Triton's `pytorch_libtorch` platform) and
`torch.export` programs (`model.pt2` written by `torch.export.save`, or an AOTInductor package
written by `torch._inductor.aoti_compile_and_package`).

Tensor names follow Triton's PyTorch backend: an input is bound to the forward argument of the
same name, or by position when every input is named `NAME__<index>` (`INPUT__0`, `INPUT__1`);
an output `NAME__<index>` is the index-th value the model returns (else the outputs are the
returned values in the config's order). TorchScript files declare no shapes, so their config
lists inputs and outputs; an exported program's signature gives them.

Config parameters (config.pbtxt `parameters` or model.yaml `parameters`; Triton's upper-case
names work too):
  intra_op_thread_count   torch.set_num_threads on the threads that run this model (0: the
                          cores split between the model's instances)
  inter_op_thread_count   torch.set_num_interop_threads (process-wide; only before the first
                          model runs, as torch allows)
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime, Signature
from modelyard.spec.config import TensorSpec

_TORCH_TYPES = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.float32: "FP32",
    torch.float64: "FP64",
    torch.bfloat16: "BF16",
}
_INDEXED = re.compile(r"^.+__(\d+)$")


def archive_kind(names: Sequence[str]) -> str:
    """What a PyTorch zip archive holds, from its member names: "aoti" (an AOTInductor
    package), "export" (a torch.export program) or "torchscript"."""
    if any("/data/aotinductor/" in n for n in names):
        return "aoti"
    if any("/models/" in n for n in names) or any(
        n.endswith("serialized_exported_program.json") for n in names
    ):
        return "export"
    return "torchscript"


def thread_count(params: dict[str, str], name: str) -> int:
    """A thread-count parameter, read under Triton's upper-case name or its own (Triton's
    first: a config written for Triton says it, and the advisor fills only the lower-case one)."""
    raw = params.get(name.upper(), params.get(name, "0"))
    try:
        return int(raw)
    except ValueError:
        raise ModelLoadError(f"parameter {name} must be a whole number, got {raw!r}") from None


def indexed(names: list[str]) -> list[int] | None:
    """The indices of Triton's `NAME__<index>` names, or None unless every name has one."""
    matches = [_INDEXED.match(n) for n in names]
    if not names or not all(matches):
        return None
    return [int(m.group(1)) for m in matches if m]


class PyTorchRuntime(Runtime):
    name = "pytorch"
    inline_safe = True

    _signature: Signature | None
    _input_order: list[str]
    _module: torch.nn.Module | None = None  # None for an AOTInductor package (compiled code)

    def load(self) -> None:
        params = self.config.parameters
        instances = max(1, self.config.instance_count)
        self._threads = thread_count(params, "intra_op_thread_count") or max(
            1, (os.cpu_count() or 1) // instances
        )
        _set_interop(thread_count(params, "inter_op_thread_count"))
        try:
            with zipfile.ZipFile(self.path) as archive:
                self.kind = archive_kind(archive.namelist())
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelLoadError(f"{self.path.name} is not a PyTorch archive: {exc}") from exc
        try:
            self._call, self._arg_names, self._signature = _LOADERS[self.kind](self)
        except ModelLoadError:
            raise
        except Exception as exc:  # torch raises many untyped errors on a bad file
            raise ModelLoadError(f"torch cannot load {self.path.name}: {exc}") from exc
        self._bind_inputs()

    def signature(self) -> Signature | None:
        return self._signature

    def infer(self, inputs: Arrays) -> Arrays:
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)  # per OpenMP thread: this worker thread
        args = [_tensor(inputs[n]) for n in self._input_order]
        try:
            with torch.inference_mode():
                result = self._call(args)
        except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
            raise InvalidArgument(
                f"the PyTorch model rejected the inputs: {_message(exc)}"
            ) from exc
        return self._outputs(result)

    def traceable(self) -> tuple[torch.nn.Module, list[str], list[str]]:
        """The loaded model as a module taking its inputs positionally and returning its outputs
        in the config's order (what torch.onnx.export traces), with those inputs' and outputs'
        names."""
        if self._module is None:
            raise InvalidArgument(f"{self.path.name} is compiled code (AOTInductor): not traceable")
        names = [s.name for s in self._output_specs()]  # in the order the model returns them
        if isinstance(self._module, torch.jit.ScriptModule):  # traced as it is
            return self._module, list(self._input_order), names
        return _Positional(self._module, names), list(self._input_order), names

    # -- loading -----------------------------------------------------------------------------

    def _load_torchscript(self) -> tuple[Callable[[list[torch.Tensor]], Any], list[str], None]:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; Triton serves it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(self.path), map_location="cpu")  # type: ignore[no-untyped-call]
        module.eval()
        self._module = module
        arguments = module.forward.schema.arguments[1:]  # past self
        return (lambda args: module(*args)), [a.name for a in arguments], None

    def _load_export(self) -> tuple[Callable[[list[torch.Tensor]], Any], list[str], Signature]:
        program = torch.export.load(str(self.path))
        module = program.module()
        self._module = module
        inputs, outputs = _export_signature(program)
        return (lambda args: module(*args)), [t.name for t in inputs], (inputs, outputs)

    def _load_aoti(self) -> tuple[Callable[[list[torch.Tensor]], Any], list[str], None]:
        compiled = torch._inductor.aoti_load_package(str(self.path))
        names = [f"INPUT__{i}" for i in range(len(self.config.inputs))]
        return (lambda args: compiled(*args)), names, None

    def _bind_inputs(self) -> None:
        """The order the model takes the config's inputs in (Triton's naming rules)."""
        names = [t.name for t in self.config.inputs] or list(self._arg_names)
        if set(names) <= set(self._arg_names):
            self._input_order = sorted(names, key=self._arg_names.index)
        elif (indices := indexed(names)) is not None:
            self._input_order = [n for _, n in sorted(zip(indices, names, strict=True))]
        else:
            raise ModelLoadError(
                f"{self.path.name}: inputs {names} name neither the model's forward arguments "
                f"{self._arg_names} nor positions (Triton's INPUT__0, INPUT__1, ...)"
            )
        expected = len(self._arg_names) if self.kind != "aoti" else len(names)
        if len(self._input_order) != expected:
            raise ModelLoadError(
                f"{self.path.name} takes {expected} inputs ({', '.join(self._arg_names)}); "
                f"the config lists {len(names)}"
            )
        if self._signature is not None:  # an exported program: renamed as the config says
            by_arg = {t.name: t for t in self._signature[0]}
            renamed = [
                TensorSpec(n, by_arg[a].datatype, by_arg[a].dims)
                for n, a in zip(self._input_order, self._arg_names, strict=True)
            ]
            outputs = self._signature[1]
            if len(self.config.outputs) == len(outputs):
                outputs = [
                    TensorSpec(c.name, o.datatype, o.dims)
                    for c, o in zip(self._output_specs(), outputs, strict=True)
                ]
            self._signature = (renamed, outputs)

    def _output_specs(self) -> list[TensorSpec]:
        """The config's outputs in the order the model returns them."""
        specs = list(self.config.outputs)
        indices = indexed([s.name for s in specs])
        if indices is None:
            return specs
        return [s for _, s in sorted(zip(indices, specs, strict=True), key=lambda p: p[0])]

    # -- results -----------------------------------------------------------------------------

    def _outputs(self, result: Any) -> Arrays:
        if isinstance(result, dict):
            return {str(k): _to_numpy(v) for k, v in result.items()}
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        names = [t.name for t in self.config.outputs] or [
            f"OUTPUT__{i}" for i in range(len(values))
        ]
        indices = indexed(names) or list(range(len(names)))
        if len(values) <= max(indices, default=-1):
            raise InvalidArgument(
                f"the model returned {len(values)} values; the config names {len(names)}"
            )
        return {name: _to_numpy(values[i]) for name, i in zip(names, indices, strict=True)}


class _Positional(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def train(self, mode: bool = True) -> _Positional:
        """Left as it is: an exported program's module refuses train() even to turn it off."""
        self.training = mode
        return self

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(*args)
        if isinstance(result, dict):
            return tuple(result[n] for n in self.names)
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        return tuple(values[i] for i in indexed(self.names) or range(len(self.names)))


_LOADERS: dict[
    str, Callable[[PyTorchRuntime], tuple[Callable[[list[torch.Tensor]], Any], list[str], Any]]
] = {
    "torchscript": PyTorchRuntime._load_torchscript,
    "export": PyTorchRuntime._load_export,
    "aoti": PyTorchRuntime._load_aoti,
}


def _set_interop(count: int) -> None:
    """torch's inter-op pool is process-wide and fixed once any model has run in it."""
    if count <= 0 or torch.get_num_interop_threads() == count:
        return
    try:
        torch.set_num_interop_threads(count)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"inter_op_thread_count {count}: torch's inter-op pool is already running with "
            f"{torch.get_num_interop_threads()} threads (it is set once per process)"
        ) from exc


def _export_signature(program: Any) -> Signature:
    """Inputs (named after the forward arguments) and outputs (`OUTPUT__<index>`) of an
    exported program, with -1 for its dynamic dimensions."""
    from torch.export.graph_signature import InputKind

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = [
        _tensor_spec(spec.arg.name, placeholders[spec.arg.name].meta.get("val"))
        for spec in program.graph_signature.input_specs
        if spec.kind == InputKind.USER_INPUT
    ]
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    values = output_node.args[0]
    user = len(program.graph_signature.user_outputs)
    outputs = [
        _tensor_spec(f"OUTPUT__{i}", getattr(v, "meta", {}).get("val"))
        for i, v in enumerate(values[len(values) - user :])
    ]
    return inputs, outputs


def _tensor_spec(name: str, value: Any) -> TensorSpec:
    if not isinstance(value, torch.Tensor):
        raise ModelLoadError(f"tensor {name!r} is not a tensor in the exported program")
    datatype = _TORCH_TYPES.get(value.dtype)
    if datatype is None:
        raise ModelLoadError(f"tensor {name!r} has type {value.dtype}, which is not supported")
    dims = [d if isinstance(d, int) else -1 for d in value.shape]
    return TensorSpec(name, datatype, dims)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """The array as a tensor sharing its memory, or a copy when the array is read-only (a
    request's binary tail): torch has no read-only tensors, and a model may write its inputs."""
    if not array.flags.writeable:
        return torch.from_numpy(np.array(array, order="C"))
    return torch.from_numpy(np.ascontiguousarray(array))


def _to_numpy(value: Any) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise InvalidArgument(f"the model returned a {type(value).__name__}, not a tensor")
    return value.detach().cpu().numpy()


def _message(exc: BaseException) -> str:
    """What a torch error says: TorchScript's ends its call stack with the error itself, a
    native one (AOTInductor) starts with it and goes on with C++ frames."""
    text = str(exc).split("\nException raised from", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
