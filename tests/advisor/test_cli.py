"""`modelyard advise`: a table a new user can read, and JSON that validates against the
schema shipped in the package."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from modelyard.advisor import rules
from modelyard.advisor.render import schema
from modelyard.cli import main
from tests import advisor_models as am
from tests import models

DOCS = Path(__file__).resolve().parents[2] / "docs" / "advisor.md"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelyard.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    build_demo(root)
    am.llm_1b(root / "chat.gguf")
    am.embedding_bert(root / "minilm.gguf")
    am.llm_70b(root / "llama70b.gguf")
    models.xgboost_ubj(root / "iris_xgb.ubj")
    return root


def _advise(*args: str) -> str:
    result = CliRunner().invoke(main, ["advise", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_table_reads_like_advice(repo: Path) -> None:
    out = _advise(str(repo))
    assert out.startswith("this machine: ")
    for name in ("iris_onnx", "iris_sklearn", "wordcount", "chat", "minilm", "llama70b"):
        assert f"\n{name} — " in out
    assert "  pick     xgboost — an XGBoost model runs on XGBoost's own predictor" in out
    assert "  pick     onnx — named in the model's config" in out  # iris_onnx's platform
    assert "  settings intra_op_thread_count=" in out
    assert "max_batch_size=256 (as its config says)" in out  # iris_onnx's config.pbtxt
    assert "  instead  vLLM, SGLang or LMDeploy on " in out  # llama70b
    assert all(len(line) <= 100 for line in out.splitlines())


def test_one_file_and_options(repo: Path) -> None:
    out = _advise(
        str(repo / "chat.gguf"), "--goal", "throughput", "--memory", "1GiB", "--latency-ms", "5"
    )
    assert "chat — gguf, text-generation, llama" in out
    assert "throughput within 5 ms; memory budget 1 GiB" in out
    assert "n_seq_max=32, kv_size=8192" in out  # 2 contexts of 4096 fit the budget
    assert "each generated token takes about" in out


def test_json_validates_against_the_schema(repo: Path) -> None:
    for goal in ("latency", "throughput"):
        document = json.loads(_advise(str(repo), "--json", "--goal", goal))
        jsonschema.validate(document, schema())
        names = {m["name"]: m for m in document["models"]}
        assert names["iris_onnx"]["runtime"] == "onnx"
        assert names["llama70b"]["memory"]["total_bytes"] > 30 * 2**30
        assert names["iris_onnx"]["config_overrides"] == {"max_batch_size": 256}


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["advise", str(tmp_path / "nope.onnx")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = CliRunner().invoke(main, ["advise", str(tmp_path), "--memory", "lots"])
    assert result.exit_code == 1 and "8GiB" in result.output
    assert "Traceback" not in result.output


def test_docs_hold_the_rules_table_and_the_schema() -> None:
    text = DOCS.read_text()
    assert rules.markdown() in text, "regenerate: python -m modelyard.advisor.rules"
    assert "modelyard-advice/1" in text
