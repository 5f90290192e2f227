"""The advisor's PyTorch-to-ONNX offer: each kind of PyTorch model the tests serve (TorchScript
in Triton's INPUT__0 naming, a traced model with named inputs listed out of order and indexed
outputs, torch.export programs in Triton's layout and bare) is exported to ONNX by
tuning/convert.py, answers as torch does on onnxruntime, and is measured against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from modelyard.repository.loader import load_version
from modelyard.repository.scan import read_entry, scan
from modelyard.tuning.convert import compare, conversion_for, export_torch
from modelyard.tuning.space import sample_inputs
from tests.torch_models import build_torch_repository


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_torch_repository(tmp_path_factory.mktemp("torch-convert"))


@pytest.mark.parametrize("name", ["cnn_script", "addsub_traced", "cnn_export", "addsub"])
def test_the_exported_onnx_answers_as_torch(repo: Path, tmp_path: Path, name: str) -> None:
    source = scan([repo])[name]
    torch_model = load_version(source, max(source.versions), False)
    onnx_path = tmp_path / f"{name}.onnx"
    try:
        rows = {k: np.repeat(v, 3, axis=0) for k, v in sample_inputs(torch_model.config).items()}
        want = torch_model.runtime.infer(rows)
        export_torch(torch_model, onnx_path)  # after: tracing leaves torch's state changed
    finally:
        torch_model.runtime.unload()
    exported = read_entry(onnx_path)
    assert exported is not None
    onnx_model = load_version(exported, 1, False)
    try:
        assert onnx_model.config.runtime == "onnx" and onnx_model.config.max_batch_size > 0
        assert {t.name for t in onnx_model.config.inputs} == set(rows)
        got = onnx_model.runtime.infer(rows)
    finally:
        onnx_model.runtime.unload()
    assert set(got) == set(want)
    for output, array in want.items():
        np.testing.assert_allclose(got[output], array, rtol=1e-5, atol=1e-6)


def test_tune_measures_a_torch_model_against_its_onnx(repo: Path) -> None:
    assert conversion_for("pytorch") is not None
    source = scan([repo])["cnn_script"]
    conversion = compare(source, 1, goal="throughput", seconds=0.05)
    assert (conversion.source, conversion.target) == ("pytorch", "onnx")
    assert set(conversion.before) == set(conversion.after) == {1, 64}
    assert min(*conversion.before.values(), *conversion.after.values()) > 0
    text = conversion.describe()
    assert text.startswith("ONNX on onnx against pytorch here: ") and "at batch 64" in text
    assert ("torch.onnx.export" in text) == conversion.worth_it
    document = conversion.to_json()
    assert set(document["rows_per_s"]) == {"pytorch", "onnx"}
