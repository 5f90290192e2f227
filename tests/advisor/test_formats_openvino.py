"""OpenVINO IR inspected without OpenVINO (the XML read as XML), the advisor's picks for it,
its memory estimate against the RSS a load takes, and the measured offer to convert ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("openvino")

from benchmarks.memory_estimates import measure

from modelyard.advisor.advise import advise
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.inspect import inspect_artifact
from modelyard.errors import InvalidArgument
from modelyard.repository.scan import read_entry
from modelyard.spec.config import TensorSpec
from modelyard.tuning.convert import compare
from tests import models
from tests.openvino_models import MLP_WIDTHS, mlp_ir, to_ir

GiB = 2**30
FOUR_CORES = Hardware(
    cores=8, physical_cores=4, memory_bytes=16 * GiB, runtimes={"openvino": True, "onnx": True}
)


def _weights(xml: Path) -> int:
    """The elements of the IR's floating-point constants, as OpenVINO itself reads them."""
    import math

    import openvino as ov

    return sum(
        math.prod(op.get_output_shape(0))
        for op in ov.Core().read_model(xml).get_ops()
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real()
    )


def test_an_ir_gives_parameters_dtypes_and_dynamic_dims(tmp_path: Path) -> None:
    info = inspect_artifact(mlp_ir(tmp_path / "mlp.xml"))
    assert (info.format, info.container, info.quantization) == ("openvino", "ir", "FP32")
    # 32 x 64 + 64 x 4: models.mlp_onnx's zero biases fold away in the conversion
    assert info.parameters == _weights(tmp_path / "mlp.xml") == 2304
    assert info.weight_bytes == (tmp_path / "mlp.bin").stat().st_size
    assert info.inputs == [TensorSpec("x", "FP32", [-1, MLP_WIDTHS[0]])]
    assert info.outputs == [TensorSpec("y", "FP32", [-1, MLP_WIDTHS[-1]])]
    assert info.dynamic_batch
    half = inspect_artifact(mlp_ir(tmp_path / "half.xml", fp16=True))
    assert (half.quantization, half.container, half.parameters) == ("FP16", "ir-fp16", 2304)
    fixed = inspect_artifact(mlp_ir(tmp_path / "fixed.xml", batch=1))
    assert fixed.inputs == [TensorSpec("x", "FP32", [1, MLP_WIDTHS[0]])]
    assert not fixed.dynamic_batch


def test_two_inputs_of_two_types_and_two_outputs(tmp_path: Path) -> None:
    models.addsub_onnx(tmp_path / "addsub.onnx")
    info = inspect_artifact(to_ir(tmp_path / "addsub.onnx", tmp_path / "ir" / "addsub.xml"))
    assert info.inputs == [
        TensorSpec("INPUT0", "FP32", [-1, 4]),
        TensorSpec("INPUT1", "INT32", [-1, 4]),
    ]
    assert info.outputs == [
        TensorSpec("OUTPUT0", "FP32", [-1, 4]),
        TensorSpec("OUTPUT1", "FP32", [-1, 4]),
    ]


def test_xml_that_is_not_an_ir_is_no_model_and_a_broken_one_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "settings.xml").write_text("<settings/>")
    assert read_entry(tmp_path / "settings.xml") is None
    (tmp_path / "cut.xml").write_text('<net name="cut" version="11"><layers>')
    with pytest.raises(InvalidArgument, match="cannot inspect"):
        inspect_artifact(tmp_path / "cut.xml")


@pytest.mark.parametrize(
    ("goal", "hint", "instances"), [("latency", "LATENCY", 1), ("throughput", "THROUGHPUT", 4)]
)
def test_the_runtime_hint_threads_and_instances_per_goal(
    tmp_path: Path, goal: str, hint: str, instances: int
) -> None:
    info = inspect_artifact(mlp_ir(tmp_path / "mlp.xml"))
    rec = advise(info, FOUR_CORES, goal=goal)
    assert rec.runtime == "openvino"
    assert rec.settings["parameters.PERFORMANCE_HINT"] == hint
    assert rec.settings["parameters.INFERENCE_NUM_THREADS"] == 4
    assert rec.settings["instance_count"] == instances
    assert rec.settings["max_batch_size"] == 256
    assert "openvino-ovms" in rec.rules and not any(a.better for a in rec.alternatives)


def test_an_onnx_model_is_offered_conversion_when_openvino_is_installed(tmp_path: Path) -> None:
    models.mlp_onnx(tmp_path / "mlp.onnx", MLP_WIDTHS)
    rec = advise(inspect_artifact(tmp_path / "mlp.onnx"), FOUR_CORES)
    assert "onnx-openvino-ir" in rec.rules
    without = Hardware(cores=8, physical_cores=4, memory_bytes=16 * GiB, runtimes={"onnx": True})
    assert "onnx-openvino-ir" not in advise(inspect_artifact(tmp_path / "mlp.onnx"), without).rules


def test_the_conversion_is_measured_at_batch_1_and_64(tmp_path: Path) -> None:
    models.mlp_onnx(tmp_path / "mlp.onnx", MLP_WIDTHS)
    source = read_entry(tmp_path / "mlp.onnx")
    assert source is not None
    conversion = compare(source, 1, seconds=0.05)
    assert (conversion.source, conversion.target) == ("onnx", "openvino")
    assert set(conversion.before) == set(conversion.after) == {1, 64}
    assert all(v > 0 for v in [*conversion.before.values(), *conversion.after.values()])
    text = conversion.describe()
    assert "at batch 1" in text and "at batch 64" in text
    assert ("convert it" in text) == conversion.worth_it
    assert not any(tmp_path.glob("*.xml"))  # converted in a temporary folder


@pytest.mark.slow
def test_memory_estimate_within_a_quarter(tmp_path: Path) -> None:
    from benchmarks.memory_estimates import _mlps

    [onnx] = _mlps(tmp_path)[:1]
    row = measure(to_ir(onnx, tmp_path / "ir" / "mlp_5mib.xml"))
    assert row["runtime"] == "openvino" and abs(row["error"]) <= 0.25, row
