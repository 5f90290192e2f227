"""The built-in demo repository, built at first use and cached:

iris_onnx      ONNX logistic regression on the iris data set (x FP32 [-1, 4] -> probabilities)
iris_sklearn   the same classifier as a scikit-learn estimator saved with skops (safe format)
wordcount      a Python model: BYTES text in, word counts (INT64) and upper-cased text out
gemma3         Gemma 3 270M (GGUF, llama.cpp) when the [llm] extra is installed (demo_llm.py)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from modelyard import __version__
from modelyard.demo_llm import add_llm_models
from modelyard.settings import cache_dir

_WORDCOUNT_PY = '''\
import numpy as np

import modelyard


class WordCount(modelyard.Model):
    """Counts the words of each text and shouts it back."""

    def predict(self, inputs):
        texts = [t.decode("utf-8") for t in inputs["text"].reshape(-1)]
        counts = np.array([len(t.split()) for t in texts], dtype=np.int64)
        upper = np.array([t.upper().encode() for t in texts], dtype=object)
        shape = inputs["text"].shape
        return {"count": counts.reshape(shape), "upper": upper.reshape(shape)}
'''

_WORDCOUNT_YAML = """\
runtime: python
max_batch_size: 64
inputs:
  - {name: text, datatype: BYTES, shape: [1]}
outputs:
  - {name: count, datatype: INT64, shape: [1]}
  - {name: upper, datatype: BYTES, shape: [1]}
"""


def demo_repository() -> Path:
    """The demo repository folder, built once per modelyard version."""
    target = cache_dir() / f"demo-{__version__}"
    if (target / ".complete").exists():
        add_llm_models(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".demo-"))
    build_demo(staging)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    add_llm_models(target)
    return target


def build_demo(folder: Path) -> None:
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    estimator = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    sio.dump(estimator, folder / "iris_sklearn.skops")
    _iris_onnx(
        folder / "iris_onnx" / "1",
        estimator.coef_.T.astype(np.float32),
        estimator.intercept_.astype(np.float32),
    )
    (folder / "iris_onnx" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 256\n'
    )
    (folder / "wordcount").mkdir()
    (folder / "wordcount" / "model.py").write_text(_WORDCOUNT_PY)
    (folder / "wordcount" / "model.yaml").write_text(_WORDCOUNT_YAML)


def _iris_onnx(folder: Path, weights: np.ndarray, bias: np.ndarray) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "iris",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
