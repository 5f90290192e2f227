"""OpenVINO IR read without OpenVINO: the `.xml` holds the graph (layers and edges), the `.bin`
beside it the constants' bytes. Parameters come from the weight-like Const layers' shapes,
inputs from the Parameter layers, outputs from the Result layers, `-1` dims are dynamic. An IR
whose weights are mostly FP16 (`openvino.save_model`'s default) is container `ir-fp16`: the CPU
plugin unpacks them to FP32, which costs memory of its own (advisor/memory.py)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from modelyard.advisor.artifact import ArtifactInfo
from modelyard.spec.config import TensorSpec
from modelyard.tensors import OV_TYPES

#: Const element types that hold weights (integer constants of other types are shapes,
#: axes and indices); u4/i4/nf4 are compressed weights.
_WEIGHTS = {"f32": "FP32", "f16": "FP16", "bf16": "BF16", "f64": "FP64", "i8": "INT8", "u8": "INT8"}
_WEIGHTS |= {"u4": "INT4", "i4": "INT4", "nf4": "NF4"}
#: A port's `precision` spelling -> the element type's.
_PRECISIONS = {"BOOL": "boolean", "FP16": "f16", "FP32": "f32", "FP64": "f64", "BF16": "bf16"}
_PRECISIONS |= {p: p.lower() for p in ("U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64")}


def inspect_openvino(path: Path) -> ArtifactInfo:
    """The IR at `path` (`model.xml`) and the size of its `.bin`."""
    weights = path.with_suffix(".bin")
    size = weights.stat().st_size if weights.exists() else 0
    root = ET.parse(path).getroot()
    info = ArtifactInfo(
        path,
        "openvino",
        container="ir",
        size_bytes=path.stat().st_size + size,
        weight_bytes=size,
        architecture=root.get("name") or None,
        details={"ir_version": root.get("version", "")},
    )
    layers = {layer.get("id", ""): layer for layer in root.iter("layer")}
    _count_weights(info, layers.values())
    info.inputs = [
        _spec(_names(layer.find("output/port")), layer, layer.find("output/port"))
        for layer in layers.values()
        if layer.get("type") == "Parameter"
    ]
    info.outputs = _outputs(root, layers)
    tensors = info.inputs + info.outputs
    info.dynamic_batch = bool(tensors) and all(t.dims and t.dims[0] == -1 for t in tensors)
    return info


def _count_weights(info: ArtifactInfo, layers: Iterable[ET.Element]) -> None:
    dtypes: Counter[str] = Counter()
    for layer in layers:
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None:
            continue
        datatype = _WEIGHTS.get(data.get("element_type", ""))
        if datatype is not None:
            dims = [int(d) for d in data.get("shape", "").split(",") if d.strip()]
            dtypes[datatype] += math.prod(dims)
    info.parameters = sum(dtypes.values()) or None
    info.quantization = dtypes.most_common(1)[0][0] if dtypes else None
    if info.quantization == "FP16":  # unpacked to FP32 by the CPU plugin: another memory cost
        info.container = "ir-fp16"


def _outputs(root: ET.Element, layers: dict[str, ET.Element]) -> list[TensorSpec]:
    """Each Result's tensor, named by its `output_names` (OpenVINO 2025 and later write it)
    or else by the port of the layer that feeds it."""
    feeds = {
        e.get("to-layer"): (e.get("from-layer", ""), e.get("from-port")) for e in root.iter("edge")
    }
    outputs = []
    for layer in layers.values():
        if layer.get("type") != "Result":
            continue
        producer, port_id = feeds.get(layer.get("id"), ("", None))
        port = _port(layers[producer], port_id) if producer in layers else None
        name = _least(layer.get("output_names", "")) or _names(port)
        outputs.append(_spec(name, layer, layer.find("input/port")))
    return outputs


def _port(layer: ET.Element, port_id: str | None) -> ET.Element | None:
    return next((p for p in layer.iter("port") if p.get("id") == port_id), None)


def _names(port: ET.Element | None) -> str:
    """A port's tensor name as the runtime reports it."""
    return _least(port.get("names", "")) if port is not None else ""


def _least(names: str) -> str:
    """The least of comma-separated names (the runtime names a tensor by its least name)."""
    return min((n.strip() for n in names.split(",") if n.strip()), default="")


def _spec(name: str, layer: ET.Element, port: ET.Element | None) -> TensorSpec:
    data = layer.find("data")
    element = data.get("element_type", "") if data is not None else ""
    if not element and port is not None:
        element = _PRECISIONS.get(port.get("precision", ""), "")
    dims = [int(d.text or -1) for d in port.iter("dim")] if port is not None else []
    return TensorSpec(
        name or layer.get("name", ""), OV_TYPES.get(element, "FP32"), [max(d, -1) for d in dims]
    )
