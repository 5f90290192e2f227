"""Tiny OpenVINO IR models the tests build themselves: tests/models.py's ONNX models converted
with `openvino.convert_model` and saved with `openvino.save_model`, in Triton's layout, OVMS's
layout and as bare files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import openvino as ov

from tests import models

#: The MLP's widths: x [batch, 32] -> 64 -> y [batch, 4].
MLP_WIDTHS = (32, 64, 4)


def to_ir(onnx: Path, xml: Path, fp16: bool = False, batch: int | None = None) -> Path:
    """The ONNX model at `onnx` saved as IR at `xml` (+ .bin): weights in FP32 unless `fp16`,
    the first dimension of every input fixed at `batch` when given."""
    model = ov.convert_model(onnx)
    if batch is not None:
        model.reshape({port: [batch, *list(port.get_partial_shape())[1:]] for port in model.inputs})
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, xml, compress_to_fp16=fp16)
    return xml


def mlp_ir(xml: Path, fp16: bool = False, batch: int | None = None) -> Path:
    """models.mlp_onnx (32 -> 64 -> 4, fixed-seed weights) as IR; the ONNX file it came from
    is kept in `_onnx/` beside it (a folder the scan ignores)."""
    onnx = xml.parent / "_onnx" / f"{xml.stem}.onnx"
    models.mlp_onnx(onnx, MLP_WIDTHS)
    return to_ir(onnx, xml, fp16, batch)


def build_openvino_repository(root: Path) -> Path:
    """addsub (Triton's layout: config.pbtxt with `backend: "openvino"` listing its tensors,
    1/model.xml), mlp_ovms (OVMS's layout: 1/model.xml, no config), mlp.xml + mlp.bin (bare),
    and the ONNX files they were converted from under `_onnx/` (ignored by the scan)."""
    onnx = root / "_onnx"
    models.addsub_onnx(onnx / "addsub.onnx")
    to_ir(onnx / "addsub.onnx", root / "addsub" / "1" / "model.xml")
    (root / "addsub" / "config.pbtxt").write_text(
        textwrap.dedent(
            """
            backend: "openvino"
            max_batch_size: 8
            input [
              { name: "INPUT0", data_type: TYPE_FP32, dims: [4] },
              { name: "INPUT1", data_type: TYPE_INT32, dims: [4] }
            ]
            output [
              { name: "OUTPUT0", data_type: TYPE_FP32, dims: [4] },
              { name: "OUTPUT1", data_type: TYPE_FP32, dims: [4] }
            ]
            parameters { key: "PERFORMANCE_HINT" value { string_value: "LATENCY" } }
            """
        ).lstrip()
    )
    models.mlp_onnx(onnx / "mlp.onnx", MLP_WIDTHS)
    to_ir(onnx / "mlp.onnx", root / "mlp_ovms" / "1" / "model.xml")
    to_ir(onnx / "mlp.onnx", root / "mlp.xml")
    return root
