"""Scanning, config reading and inference of what configs leave out (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.listing import describe_repository
from modelyard.repository.config import parse_pbtxt
from modelyard.repository.scan import scan
from modelyard.settings import Settings
from tests import models


def test_scan_finds_every_layout(model_repo: Path) -> None:
    found = scan([model_repo])
    assert found["addsub"].layout == "triton" and sorted(found["addsub"].versions) == [1, 2]
    assert found["identity_fp32"].layout == "file"
    assert found["broken"].layout == "simple"
    assert found["iris_xgb"].config.runtime == "xgboost"
    assert found["diabetes_lgbm"].config.runtime == "lightgbm"
    assert found["reverse"].config.runtime == "python"


def test_stray_text_and_json_files_are_not_models(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("hello")
    (tmp_path / "settings.json").write_text("{}")
    models.identity_onnx(tmp_path / "m.onnx", 1)
    assert list(scan([tmp_path])) == ["m"]


def test_pbtxt_is_read_with_protobuf() -> None:
    config = parse_pbtxt(
        'name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
        'input [{ name: "a" data_type: TYPE_STRING dims: [ 2 ] }]\n'
        "version_policy: { specific { versions: [1, 3] } }\n"
        "instance_group [{ count: 2 kind: KIND_CPU }]\n"
        "dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [4] }\n"
        'optimization { execution_accelerators { cpu_execution_accelerator: [{name: "x"}] } }',
        "m",
    )
    assert config.runtime == "onnx"
    assert config.inputs[0].datatype == "BYTES" and config.inputs[0].dims == [2]
    assert config.version_policy.select([1, 2, 3]) == [1, 3]
    assert config.instance_count == 2
    assert config.dynamic_batching is not None
    assert config.dynamic_batching.preferred_batch_sizes == [4]
    assert "optimization" in config.to_triton_json()
    with pytest.raises(InvalidArgument, match="does not parse"):
        parse_pbtxt("max_batch_size: [", "m")
    with pytest.raises(InvalidArgument, match="its folder is"):
        parse_pbtxt('name: "other"', "m")


def test_model_yaml_errors_are_reported_per_model(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.yaml").write_text("runtime: onnx\nwhat: 1\n")
    models.identity_onnx(tmp_path / "good.onnx", 1)
    rows = {r["name"]: r for r in describe_repository(Settings(repositories=(tmp_path,)))}
    assert "unknown keys ['what']" in rows["bad"]["error"]
    assert rows["good"]["inputs"] == ["x FP32 [-1, -1]"]
    assert "dynamic first dimension" in rows["good"]["reasons"]["max_batch_size"]


def test_config_naming_a_tensor_the_model_lacks(tmp_path: Path) -> None:
    models.identity_onnx(tmp_path / "m" / "1" / "model.onnx", 1)
    (tmp_path / "m" / "config.pbtxt").write_text(
        'max_batch_size: 2\ninput [{ name: "nope" data_type: TYPE_FP32 dims: [-1] }]'
    )
    rows = describe_repository(Settings(repositories=(tmp_path,)))
    assert "declares input 'nope'" in rows[0]["error"]


def test_python_model_without_signature(tmp_path: Path) -> None:
    (tmp_path / "p" / "1").mkdir(parents=True)
    (tmp_path / "p" / "1" / "model.py").write_text(models.TEXT_MODEL)
    (tmp_path / "p" / "config.pbtxt").write_text('backend: "python"')
    rows = describe_repository(Settings(repositories=(tmp_path,)))
    assert "must declare its inputs and outputs" in rows[0]["error"]
    assert ModelLoadError.code.value == "FAILED_PRECONDITION"


def test_a_model_folder_given_as_the_repository_is_that_model(model_repo: Path) -> None:
    """`modelyard serve repo/addsub`: the folder holds config.pbtxt, so it is one model."""
    found = scan([model_repo / "addsub"])
    assert list(found) == ["addsub"]
    assert sorted(found["addsub"].versions) == [1, 2]
    yaml_model = scan([model_repo / "countdown"])  # model.yaml + model.py
    assert list(yaml_model) == ["countdown"]


def _hf_folder(folder: Path, architecture: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(f'{{"architectures": ["{architecture}"]}}')
    (folder / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    return folder


def test_a_hugging_face_causal_lm_folder_is_the_transformers_runtimes(tmp_path: Path) -> None:
    _hf_folder(tmp_path / "tiny", "LlamaForCausalLM")
    _hf_folder(tmp_path / "bert", "BertModel")  # an encoder: the sentence runtime's
    _hf_folder(tmp_path / "ner", "BertForTokenClassification")
    _hf_folder(tmp_path / "mlm", "BertForMaskedLM")  # no runtime serves fill-mask: not a model
    both = _hf_folder(tmp_path / "both", "LlamaForCausalLM")
    (both / "model.yaml").write_text("parameters: {n_ctx: '64'}\n")
    (both / "model.gguf").write_bytes(b"GGUF")
    found = scan([tmp_path])
    assert set(found) == {"tiny", "both", "bert", "ner"}
    assert (found["bert"].config.runtime, found["ner"].config.runtime) == (
        "sentence",
        "hf_classifier",
    )
    assert found["bert"].versions == {1: tmp_path / "bert" / "model.safetensors"}
    tiny = found["tiny"]
    assert tiny.config.runtime == "transformers"
    assert "LlamaForCausalLM" in tiny.config.reasons["runtime"]
    assert tiny.versions == {1: tmp_path / "tiny" / "config.json"}
    # a folder that also holds a GGUF is not guessed: it must say which file (or runtime)
    error = found["both"].error or ""
    assert "model.gguf" in error and "config.json" in error
