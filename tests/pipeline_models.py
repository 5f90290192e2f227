"""Pipeline repositories the tests build: a Triton ensemble written the way Triton's docs write
one (preprocess -> ONNX addsub -> postprocess), the same DAG as a `model.yaml` pipeline and as
an OVMS `config.json` DAG (all ONNX, since OVMS serves ONNX/IR models), a fan-out DAG whose two
slow branches read one tensor, and an ensemble whose step fails.

The answers: A = RAW + 1, B = int(RAW) (truncated), addsub version 2 (the latest: scale 10)
gives SUM = (A + B) * 10 and DIFF = A - B, and postprocess gives PRODUCT = SUM * DIFF. The
Python and ONNX pre/postprocess steps compute the same numbers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto

from tests.models import FAILING_MODEL, FAILING_YAML, addsub_onnx, slow_model


def expected(raw: np.ndarray) -> np.ndarray:
    a = raw + 1
    b = raw.astype(np.int32).astype(np.float32)
    return ((a + b) * 10) * (a - b)


PREPROCESS = textwrap.dedent("""\
    import time

    import numpy as np
    import modelyard


    class Preprocess(modelyard.Model):
        def predict(self, inputs):  # 20 ms an execution: requests queue behind it, and batch
            time.sleep(0.02)
            raw = inputs["RAW"]
            return {"A": raw + 1, "B": raw.astype(np.int32)}
    """)

PREPROCESS_CONFIG = textwrap.dedent("""\
    backend: "python"
    max_batch_size: 16
    input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
    output [
      { name: "A" data_type: TYPE_FP32 dims: [ 4 ] },
      { name: "B" data_type: TYPE_INT32 dims: [ 4 ] }
    ]
    """)

POSTPROCESS = textwrap.dedent("""\
    import modelyard


    class Postprocess(modelyard.Model):
        def predict(self, inputs):
            return {"PRODUCT": inputs["SUM"] * inputs["DIFF"]}
    """)

POSTPROCESS_CONFIG = textwrap.dedent("""\
    backend: "python"
    max_batch_size: 16
    input [
      { name: "SUM" data_type: TYPE_FP32 dims: [ 4 ] },
      { name: "DIFF" data_type: TYPE_FP32 dims: [ 4 ] }
    ]
    output [ { name: "PRODUCT" data_type: TYPE_FP32 dims: [ 4 ] } ]
    """)

ENSEMBLE_CONFIG = textwrap.dedent("""\
    name: "pipeline"
    platform: "ensemble"
    max_batch_size: 8
    input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
    output [ { name: "RESULT" data_type: TYPE_FP32 dims: [ 4 ] } ]
    ensemble_scheduling {
      step [
        {
          model_name: "preprocess"
          model_version: -1
          input_map { key: "RAW" value: "RAW" }
          output_map { key: "A" value: "a" }
          output_map { key: "B" value: "b" }
        },
        {
          model_name: "addsub"
          model_version: -1
          input_map { key: "INPUT0" value: "a" }
          input_map { key: "INPUT1" value: "b" }
          output_map { key: "OUTPUT0" value: "sum" }
          output_map { key: "OUTPUT1" value: "diff" }
        },
        {
          model_name: "postprocess"
          model_version: -1
          input_map { key: "SUM" value: "sum" }
          input_map { key: "DIFF" value: "diff" }
          output_map { key: "PRODUCT" value: "RESULT" }
        }
      ]
    }
    """)

PIPELINE_YAML = textwrap.dedent("""\
    max_batch_size: 8
    pipeline:
      inputs: [{name: RAW, datatype: FP32, shape: [4]}]
      outputs: [RESULT]
      steps:
        - model: preprocess
          inputs: {RAW: RAW}
          outputs: {A: a, B: b}
        - model: addsub
          version: -1
          inputs: {INPUT0: a, INPUT1: b}
          outputs: {OUTPUT0: sum, OUTPUT1: diff}
        - model: postprocess
          inputs: {SUM: sum, DIFF: diff}
          outputs: {PRODUCT: RESULT}
    """)

FANOUT_CONFIG = textwrap.dedent("""\
    platform: "ensemble"
    input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
    output [
      { name: "LEFT" data_type: TYPE_FP32 dims: [ 1 ] },
      { name: "RIGHT" data_type: TYPE_FP32 dims: [ 1 ] }
    ]
    ensemble_scheduling {
      step [
        { model_name: "slow_left" model_version: -1
          input_map { key: "X" value: "X" } output_map { key: "Y" value: "LEFT" } },
        { model_name: "slow_right" model_version: 1
          input_map { key: "X" value: "X" } output_map { key: "Y" value: "RIGHT" } }
      ]
    }
    """)

SLOW_CHAIN_CONFIG = textwrap.dedent("""\
    platform: "ensemble"
    input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
    output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
    ensemble_scheduling {
      step [
        { model_name: "slow_left" model_version: -1
          input_map { key: "X" value: "X" } output_map { key: "Y" value: "mid" } },
        { model_name: "slow_right" model_version: -1
          input_map { key: "X" value: "mid" } output_map { key: "Y" value: "OUT" } }
      ]
    }
    """)

FAILING_ENSEMBLE_CONFIG = textwrap.dedent("""\
    platform: "ensemble"
    input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
    output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
    ensemble_scheduling {
      step [
        { model_name: "broken" model_version: -1
          input_map { key: "x" value: "IN" } output_map { key: "y" value: "OUT" } }
      ]
    }
    """)


def pipeline_repository(root: Path) -> Path:
    """The Triton-style repository: steps, the ensemble, its model.yaml twin, a fan-out DAG
    and a failing ensemble."""
    _python(root / "preprocess", PREPROCESS, PREPROCESS_CONFIG)
    _python(root / "postprocess", POSTPROCESS, POSTPROCESS_CONFIG)
    addsub_onnx(root / "addsub" / "1" / "model.onnx", scale=1.0)
    addsub_onnx(root / "addsub" / "2" / "model.onnx", scale=10.0)
    (root / "addsub" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 16\nversion_policy: { all { } }\n'
    )
    (root / "pipeline" / "1").mkdir(parents=True)  # Triton ensembles keep an empty version
    (root / "pipeline" / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    (root / "pipeline_yaml").mkdir()
    (root / "pipeline_yaml" / "model.yaml").write_text(PIPELINE_YAML)
    slow = "instance_group [ { count: 1 } ]\n"
    slow_model(root, "slow_left", slow, delay=0.6)
    slow_model(root, "slow_right", slow, delay=0.6)
    (root / "fanout" / "1").mkdir(parents=True)
    (root / "fanout" / "config.pbtxt").write_text(FANOUT_CONFIG)
    (root / "slowchain" / "1").mkdir(parents=True)
    (root / "slowchain" / "config.pbtxt").write_text(SLOW_CHAIN_CONFIG)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.py").write_text(FAILING_MODEL)
    (root / "broken" / "model.yaml").write_text(FAILING_YAML)
    (root / "fails" / "1").mkdir(parents=True)
    (root / "fails" / "config.pbtxt").write_text(FAILING_ENSEMBLE_CONFIG)
    return root


def _python(folder: Path, code: str, config: str) -> None:
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(code)
    (folder / "config.pbtxt").write_text(config)


def ovms_repository(root: Path) -> Path:
    """An OVMS repository: config.json at the root, models in numbered version folders
    (ONNX), and the same DAG as the ensemble in pipeline_config_list."""
    models = root / "models"
    preprocess_onnx(models / "pre" / "1" / "model.onnx")
    addsub_onnx(models / "addsub" / "1" / "model.onnx", scale=1.0)
    addsub_onnx(models / "addsub" / "2" / "model.onnx", scale=10.0)
    postprocess_onnx(models / "post" / "1" / "model.onnx")
    node = {"node_name": "request", "data_item": "RAW"}
    config = {
        "model_config_list": [
            {"config": {"name": "pre", "base_path": "models/pre"}},
            {"config": {"name": "addsub", "base_path": "models/addsub"}},
            {"config": {"name": "post", "base_path": "models/post"}},
        ],
        "pipeline_config_list": [
            {
                "name": "pipeline",
                "inputs": ["RAW"],
                "nodes": [
                    {
                        "name": "pre_node",
                        "model_name": "pre",
                        "type": "DL model",
                        "inputs": [{"RAW": node}],
                        "outputs": [{"data_item": "A", "alias": "a"}, {"data_item": "B"}],
                    },
                    {
                        "name": "addsub_node",
                        "model_name": "addsub",
                        "type": "DL model",
                        "inputs": [
                            {"INPUT0": {"node_name": "pre_node", "data_item": "a"}},
                            {"INPUT1": {"node_name": "pre_node", "data_item": "B"}},
                        ],
                        "outputs": [
                            {"data_item": "OUTPUT0", "alias": "sum"},
                            {"data_item": "OUTPUT1", "alias": "diff"},
                        ],
                    },
                    {
                        "name": "post_node",
                        "model_name": "post",
                        "type": "DL model",
                        "inputs": [
                            {"SUM": {"node_name": "addsub_node", "data_item": "sum"}},
                            {"DIFF": {"node_name": "addsub_node", "data_item": "diff"}},
                        ],
                        "outputs": [{"data_item": "PRODUCT", "alias": "product"}],
                    },
                ],
                "outputs": [{"RESULT": {"node_name": "post_node", "data_item": "product"}}],
            }
        ],
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    return root


def preprocess_onnx(path: Path) -> None:
    """A = RAW + 1 (FP32), B = int(RAW) (INT32, truncated), RAW [batch, 4]."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["RAW", "one"], ["A"]),
            helper.make_node("Cast", ["RAW"], ["B"], to=TensorProto.INT32),
        ],
        "preprocess",
        [helper.make_tensor_value_info("RAW", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("B", TensorProto.INT32, ["batch", 4]),
        ],
        [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")],
    )
    _save(graph, path)


def postprocess_onnx(path: Path) -> None:
    """PRODUCT = SUM * DIFF, all FP32 [batch, 4]."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["SUM", "DIFF"], ["PRODUCT"])],
        "postprocess",
        [
            helper.make_tensor_value_info("SUM", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("DIFF", TensorProto.FLOAT, ["batch", 4]),
        ],
        [helper.make_tensor_value_info("PRODUCT", TensorProto.FLOAT, ["batch", 4])],
    )
    _save(graph, path)


def _save(graph: GraphProto, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


# ---- the same ensemble with Triton Python-backend (pb_utils) steps ----------------------------

PB_PREPROCESS = textwrap.dedent("""\
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                raw = pb_utils.get_input_tensor_by_name(request, "RAW").as_numpy()
                a = pb_utils.Tensor("A", (raw + 1).astype(np.float32))
                b = pb_utils.Tensor("B", raw.astype(np.int32))
                responses.append(pb_utils.InferenceResponse(output_tensors=[a, b]))
            return responses
    """)

PB_POSTPROCESS = textwrap.dedent("""\
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                total = pb_utils.get_input_tensor_by_name(request, "SUM").as_numpy()
                diff = pb_utils.get_input_tensor_by_name(request, "DIFF").as_numpy()
                if (total < -1000).any():
                    error = pb_utils.TritonError("postprocess refuses a SUM below -1000")
                    responses.append(pb_utils.InferenceResponse(error=error))
                    continue
                product = pb_utils.Tensor("PRODUCT", total * diff)
                responses.append(pb_utils.InferenceResponse(output_tensors=[product]))
            return responses
    """)


def pb_utils_pipeline_repository(root: Path) -> Path:
    """The ensemble of `pipeline_repository` with its Python steps written as Triton
    Python-backend models (pb_utils), the way Triton's docs write them."""
    for name in ("preprocess", "postprocess"):
        (root / name / "1").mkdir(parents=True)
    (root / "preprocess" / "1" / "model.py").write_text(PB_PREPROCESS)
    (root / "preprocess" / "config.pbtxt").write_text(PREPROCESS_CONFIG)
    (root / "postprocess" / "1" / "model.py").write_text(PB_POSTPROCESS)
    (root / "postprocess" / "config.pbtxt").write_text(POSTPROCESS_CONFIG)
    addsub_onnx(root / "addsub" / "1" / "model.onnx", scale=1.0)
    addsub_onnx(root / "addsub" / "2" / "model.onnx", scale=10.0)
    (root / "addsub" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 16\nversion_policy: { all { } }\n'
    )
    (root / "pipeline" / "1").mkdir(parents=True)
    (root / "pipeline" / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    return root
