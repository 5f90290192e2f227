"""Memory estimates against measured RSS growth when loading real models, each in a fresh
process (benchmarks/memory_estimates.py; its full table is in docs/advisor.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from benchmarks.memory_estimates import measure

from tests import models

TOLERANCE = 0.25


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelyard.demo import build_demo

    folder = tmp_path_factory.mktemp("demo")
    build_demo(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["iris_onnx", "iris_sklearn.skops"])
def test_demo_models_within_a_quarter(demo: Path, entry: str) -> None:
    row = measure(demo / entry)
    assert abs(row["error"]) <= TOLERANCE, row


@pytest.mark.slow
def test_weights_dominated_models_within_a_quarter(tmp_path: Path) -> None:
    models.xgboost_ubj(tmp_path / "xgb.ubj")
    from benchmarks.memory_estimates import _mlps

    for path in [*_mlps(tmp_path)[:1], tmp_path / "xgb.ubj"]:
        row = measure(path)
        assert abs(row["error"]) <= TOLERANCE, row


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)
def test_gguf_within_a_quarter(tmp_path: Path) -> None:
    from tests.llm_models import tiny_gguf

    folder = tmp_path / "llm"
    folder.mkdir()
    tiny_gguf(folder / "model.gguf")
    (folder / "model.yaml").write_text("runtime: llamacpp\nparameters: {n_ctx: 256}\n")
    row = measure(folder)
    assert row["context"] == 256 and abs(row["error"]) <= TOLERANCE, row
