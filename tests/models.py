"""Tiny real models the tests build themselves (onnx helper, sklearn's bundled data sets,
xgboost/lightgbm on those data, Python model classes)."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import lightgbm
    import xgboost
    from onnx import GraphProto
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier


def addsub_onnx(path: Path, scale: float = 1.0) -> None:
    """OUTPUT0 = (INPUT0 + INPUT1) * scale, OUTPUT1 = INPUT0 - INPUT1; INPUT0 FP32, INPUT1 INT32,
    both [batch, 4]. Version folders get different scales so tests can tell them apart."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["INPUT0", "b"], ["sum"]),
        helper.make_node("Mul", ["sum", "scale"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "b"], ["OUTPUT1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "addsub",
        [
            helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("INPUT1", TensorProto.INT32, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("OUTPUT1", TensorProto.FLOAT, ["batch", 4]),
        ],
        [numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale")],
    )
    _save(graph, path)


def identity_onnx(path: Path, datatype: int, name: str = "x") -> None:
    """y = x for any shape, of one ONNX element type (TensorProto.*)."""
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [name], ["y"])],
        "identity",
        [helper.make_tensor_value_info(name, datatype, ["batch", "n"])],
        [helper.make_tensor_value_info("y", datatype, ["batch", "n"])],
    )
    _save(graph, path)


def mlp_onnx(path: Path, widths: tuple[int, ...] = (32, 64, 4), seed: int = 0) -> None:
    """A float MLP `x` [batch, widths[0]] -> Gemm -> Relu ... -> Gemm -> `y`, fixed-seed
    weights (the tiny MLP of the advisor's measurements is 32 -> 64 -> 4)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, current = [], [], "x"
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        w = rng.standard_normal((fan_in, fan_out)).astype(np.float32)
        weights += [
            numpy_helper.from_array(w, f"w{layer}"),
            numpy_helper.from_array(np.zeros(fan_out, np.float32), f"b{layer}"),
        ]
        last = layer == len(widths) - 2
        gemm = "y" if last else f"g{layer}"
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [gemm]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm], [f"h{layer}"]))
        current = f"h{layer}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", widths[-1]])],
        weights,
    )
    _save(graph, path)


def xgboost_trees(path: Path, trees: int = 50) -> xgboost.Booster:
    """A regressor of `trees` trees on sklearn's diabetes data (10 features)."""
    import xgboost
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    booster = xgboost.train(
        {"objective": "reg:squarederror", "nthread": 1, "max_depth": 6},
        xgboost.DMatrix(data.data, label=data.target),
        num_boost_round=trees,
    )
    booster.save_model(str(path))
    return booster


def _save(graph: GraphProto, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


def sklearn_skops(path: Path) -> LogisticRegression:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    sio.dump(estimator, path)
    return estimator


def sklearn_joblib(path: Path) -> DecisionTreeClassifier:
    import joblib
    from sklearn.tree import DecisionTreeClassifier

    x, y = iris()
    estimator = DecisionTreeClassifier(random_state=0).fit(x, y)
    joblib.dump(estimator, path)
    return estimator


def xgboost_ubj(path: Path) -> xgboost.Booster:
    import xgboost

    x, y = iris()
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "nthread": 1},
        xgboost.DMatrix(x, label=y),
        num_boost_round=5,
    )
    booster.save_model(str(path))
    return booster


def lightgbm_txt(path: Path) -> lightgbm.Booster:
    import lightgbm
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    booster = lightgbm.train(
        {"objective": "regression", "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(data.data, label=data.target),
        num_boost_round=10,
    )
    booster.save_model(str(path))
    return booster


TEXT_MODEL = textwrap.dedent("""\
    import numpy as np
    import modelyard


    class Reverse(modelyard.Model):
        def load(self):
            self.suffix = self.parameters.get("suffix", "").encode()

        def predict(self, inputs):
            texts = inputs["TEXT"]
            out = np.array([t[::-1] + self.suffix for t in texts.reshape(-1)], dtype=object)
            lengths = np.array([len(t) for t in texts.reshape(-1)], dtype=np.int32)
            return {"REVERSED": out.reshape(texts.shape), "LENGTH": lengths.reshape(texts.shape)}
    """)

TEXT_CONFIG = textwrap.dedent("""\
    backend: "python"
    max_batch_size: 8
    input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
    output [
      { name: "REVERSED" data_type: TYPE_STRING dims: [ -1 ] },
      { name: "LENGTH" data_type: TYPE_INT32 dims: [ -1 ] }
    ]
    parameters { key: "suffix" value: { string_value: "!" } }
    """)

FAILING_MODEL = textwrap.dedent("""\
    import modelyard


    class Broken(modelyard.Model):
        def predict(self, inputs):
            if float(inputs["x"].sum()) < 0:
                raise RuntimeError("negative input breaks this model")
            return {"y": inputs["x"] * 2}
    """)

FAILING_YAML = textwrap.dedent("""\
    runtime: python
    inputs: [{name: x, datatype: FP32, shape: [-1]}]
    outputs: [{name: y, datatype: FP32, shape: [-1]}]
    """)

STREAM_MODEL = textwrap.dedent('''\
    import time

    import numpy as np
    import modelyard


    class Countdown(modelyard.Model):
        """Yields one response per step, `delay` seconds apart."""

        def predict(self, inputs):
            n = int(inputs["N"].reshape(-1)[0])
            delay = float(self.parameters.get("delay", "0.2"))
            for i in range(n, 0, -1):
                time.sleep(delay)
                yield {"COUNT": np.array([i], dtype=np.int32)}
    ''')

STREAM_YAML = textwrap.dedent("""\
    runtime: python
    inputs: [{name: N, datatype: INT32, shape: [1]}]
    outputs: [{name: COUNT, datatype: INT32, shape: [1]}]
    parameters: {delay: "0.2"}
    """)


SLOW_MODEL = textwrap.dedent('''\
    import itertools
    import threading
    import time

    import numpy as np
    import modelyard


    class Slow(modelyard.Model):
        """Sleeps `delay` seconds per execution; SEQ tells the order executions started in."""

        def load(self):
            self.delay = float(self.parameters.get("delay", "0.3"))
            self.counter = itertools.count()
            self.lock = threading.Lock()

        def predict(self, inputs):
            with self.lock:
                seq = next(self.counter)
            time.sleep(self.delay)
            x = inputs["X"]
            return {"Y": x, "SEQ": np.full(x.shape, seq, dtype=np.int64)}
    ''')


def slow_model(root: Path, name: str, config_extra: str, delay: float = 0.3) -> None:
    """A Python model that sleeps per execution, configured with extra config.pbtxt text."""
    folder = root / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(SLOW_MODEL)
    (root / name / "config.pbtxt").write_text(
        textwrap.dedent(f'''\
        backend: "python"
        input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
        output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }},
                 {{ name: "SEQ" data_type: TYPE_INT64 dims: [ 1 ] }} ]
        parameters {{ key: "delay" value: {{ string_value: "{delay}" }} }}
        ''')
        + config_extra
    )


def build_repository(root: Path) -> Path:
    """A repository holding one model of each layout and runtime the server supports."""
    root.mkdir(parents=True, exist_ok=True)
    triton = root / "addsub"
    addsub_onnx(triton / "1" / "model.onnx", scale=1.0)
    addsub_onnx(triton / "2" / "model.onnx", scale=10.0)
    (triton / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 8\nversion_policy: { all { } }\n'
    )
    from onnx import TensorProto

    identity_onnx(root / "identity_fp32.onnx", TensorProto.FLOAT)
    identity_onnx(root / "identity_fp16.onnx", TensorProto.FLOAT16)
    identity_onnx(root / "identity_bool.onnx", TensorProto.BOOL)
    identity_onnx(root / "identity_int8.onnx", TensorProto.INT8)
    identity_onnx(root / "identity_uint64.onnx", TensorProto.UINT64)
    identity_onnx(root / "identity_string.onnx", TensorProto.STRING)
    sklearn_skops(root / "iris_logreg.skops")
    sklearn_joblib(root / "iris_tree.joblib")
    xgboost_ubj(root / "iris_xgb.ubj")
    lightgbm_txt(root / "diabetes_lgbm.txt")
    text = root / "reverse"
    (text / "1").mkdir(parents=True)
    (text / "1" / "model.py").write_text(TEXT_MODEL)
    (text / "config.pbtxt").write_text(TEXT_CONFIG)
    broken = root / "broken"
    broken.mkdir()
    (broken / "model.py").write_text(FAILING_MODEL)
    (broken / "model.yaml").write_text(FAILING_YAML)
    stream = root / "countdown"
    stream.mkdir()
    (stream / "model.py").write_text(STREAM_MODEL)
    (stream / "model.yaml").write_text(STREAM_YAML)
    return root
