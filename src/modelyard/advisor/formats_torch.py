"""PyTorch archives read without torch: TorchScript (`.pt`, a zip with code/ and data.pkl),
torch.export programs (`.pt2` with models/*.json) and AOTInductor packages (`.pt2` with a
compiled library). An exported program's JSON gives its parameters, dtypes and the dims of
its inputs and outputs (symbolic ones are dynamic); TorchScript's pickle names only the storage
types of its weights, whose byte counts give the parameters."""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from modelyard.advisor.artifact import ArtifactInfo
from modelyard.runtimes.torchserve_archive import read_manifest
from modelyard.spec.config import TensorSpec

# torch.export's serialized ScalarType codes -> (KServe datatype, bytes per element)
_SCALAR_TYPES = {
    1: ("UINT8", 1),
    2: ("INT8", 1),
    3: ("INT16", 2),
    4: ("INT32", 4),
    5: ("INT64", 8),
    6: ("FP16", 2),
    7: ("FP32", 4),
    8: ("FP64", 8),
    12: ("BOOL", 1),
    13: ("BF16", 2),
}
# TorchScript's storage classes (data.pkl) -> (KServe datatype, bytes per element)
_STORAGES = {
    "FloatStorage": ("FP32", 4),
    "DoubleStorage": ("FP64", 8),
    "HalfStorage": ("FP16", 2),
    "BFloat16Storage": ("BF16", 2),
    "LongStorage": ("INT64", 8),
    "IntStorage": ("INT32", 4),
    "ShortStorage": ("INT16", 2),
    "CharStorage": ("INT8", 1),
    "ByteStorage": ("UINT8", 1),
    "BoolStorage": ("BOOL", 1),
}
_STORAGE_NAME = re.compile(rb"torch\n(\w+Storage)\n")


def inspect_torch_archive(path: Path) -> ArtifactInfo:
    """TorchScript (`.pt` with code/), a torch.export program or an AOTInductor package."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = sum(i.file_size for i in archive.infolist() if "/data/" in i.filename)
        info = ArtifactInfo(
            path,
            "torchscript",
            container="zip",
            size_bytes=path.stat().st_size,
            weight_bytes=data or path.stat().st_size,
        )
        if any("/data/aotinductor/" in n for n in names):
            info.format, info.container = "torch-export", "aoti"
            info.details["note"] = "an AOTInductor package: its tensors are listed in the config"
        elif model := next((n for n in names if re.search(r"/models/[^/]+\.json$", n)), None):
            info.format = "torch-export"
            _read_program(info, json.loads(archive.read(model)))
        elif pickle := next((n for n in names if n.endswith("/data.pkl")), None):
            _read_storages(info, archive.read(pickle))
    return info


def _read_program(info: ArtifactInfo, program: dict[str, Any]) -> None:
    graph = program["graph_module"]
    values = graph["graph"]["tensor_values"]
    dtypes: Counter[str] = Counter()
    params = nbytes = 0
    user_inputs: list[str] = []
    for spec in graph["signature"]["input_specs"]:
        kind, body = next(iter(spec.items()))
        name = body["arg"].get("as_tensor", body["arg"]).get("name", "")
        if kind == "user_input":
            user_inputs.append(name)
        elif name in values:
            count, (datatype, size) = _count(values[name]), _datatype(values[name])
            params, nbytes = params + count, nbytes + count * size
            dtypes[datatype] += count
    outputs = [
        body["arg"].get("as_tensor", {}).get("name", "")
        for spec in graph["signature"]["output_specs"]
        for kind, body in spec.items()
        if kind == "user_output"
    ]
    info.parameters, info.weight_bytes = params, nbytes or info.weight_bytes
    info.quantization = dtypes.most_common(1)[0][0] if dtypes else None
    info.inputs = [_spec(n, values[n]) for n in user_inputs if n in values]
    info.outputs = [_spec(f"OUTPUT__{i}", values[n]) for i, n in enumerate(outputs) if n in values]
    tensors = info.inputs + info.outputs
    info.dynamic_batch = bool(tensors) and all(t.dims and t.dims[0] == -1 for t in tensors)


def _read_storages(info: ArtifactInfo, pickle: bytes) -> None:
    """The dominant weight type from the storage classes data.pkl names (read as bytes, never
    unpickled) and the parameters its byte count makes."""
    kinds = Counter(m.decode() for m in _STORAGE_NAME.findall(pickle))
    known = [k for k, _ in kinds.most_common() if k in _STORAGES]
    if known and info.weight_bytes:
        datatype, size = _STORAGES[known[0]]
        info.quantization = datatype
        info.parameters = info.weight_bytes // size


def _datatype(meta: dict[str, Any]) -> tuple[str, int]:
    return _SCALAR_TYPES.get(int(meta.get("dtype", 7)), ("FP32", 4))


def _dims(meta: dict[str, Any]) -> list[int]:
    return [int(d["as_int"]) if "as_int" in d else -1 for d in meta.get("sizes", [])]


def _count(meta: dict[str, Any]) -> int:
    count = 1
    for dim in _dims(meta):
        count *= max(dim, 1)
    return count


def _spec(name: str, meta: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name, _datatype(meta)[0], _dims(meta))


def inspect_torchserve_archive(path: Path) -> ArtifactInfo:
    """A TorchServe archive: its manifest's handler and model, and the serialized model's
    size (the weights) read from the zip's directory."""
    manifest = read_manifest(path)
    weights = None
    if manifest.serialized_file:
        with zipfile.ZipFile(path) as archive:
            names = {info.filename: info.file_size for info in archive.infolist()}
        weights = names.get(manifest.serialized_file)
    return ArtifactInfo(
        path,
        "torchserve",
        container="mar",
        size_bytes=path.stat().st_size,
        weight_bytes=weights,
        details={"handler": manifest.handler, "model_name": manifest.model_name},
    )
