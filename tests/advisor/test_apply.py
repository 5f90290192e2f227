"""The advisor inside the repository: what a config leaves out the advisor fills, with its
reason in config.reasons (startup log, `modelyard list`, metadata); a config always wins;
the memory budget refuses a model before loading."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from modelyard.advisor.apply import advise_config, refuse_over_budget
from modelyard.advisor.hardware import probe
from modelyard.errors import ModelLoadError, ResourceExhausted
from modelyard.listing import describe_repository, render_table
from modelyard.repository.loader import load_version
from modelyard.repository.scan import read_entry
from modelyard.settings import Settings
from modelyard.spec.config import ModelConfig
from tests import advisor_models as am
from tests import models

GiB = 2**30


def _load(entry: Path) -> ModelConfig:
    source = read_entry(entry)
    assert source is not None and source.error is None, source
    version = load_version(source, max(source.versions), trust_pickle=False)
    version.runtime.unload()
    return version.config


def test_a_bare_file_gets_the_advisors_settings(tmp_path: Path) -> None:
    models.addsub_onnx(tmp_path / "addsub.onnx")
    config = _load(tmp_path / "addsub.onnx")
    cores = probe().physical_cores
    assert config.parameters["intra_op_thread_count"] == str(cores)
    assert config.reasons["runtime"].startswith("advisor: an ONNX graph")
    assert config.reasons["parameters.intra_op_thread_count"].startswith(f"advisor: {cores} — ")
    assert config.max_batch_size == 256
    assert "dynamic first dimension" in config.reasons["max_batch_size"]
    assert config.dynamic_batching is not None and config.dynamic_batching.max_queue_delay_us == 0


def test_the_config_always_wins(tmp_path: Path) -> None:
    folder = tmp_path / "pinned"
    models.addsub_onnx(folder / "model.onnx")
    (folder / "model.yaml").write_text(
        textwrap.dedent("""\
        runtime: onnx
        instances: 3
        max_batch_size: 8
        parameters: {intra_op_thread_count: 1}
        dynamic_batching: {max_queue_delay_us: 500}
        """)
    )
    config = _load(folder)
    assert (config.instance_count, config.max_batch_size) == (3, 8)
    assert config.parameters["intra_op_thread_count"] == "1"
    assert config.dynamic_batching is not None and config.dynamic_batching.max_queue_delay_us == 500
    assert config.reasons["instances"] == "model.yaml"
    assert config.reasons["runtime"] == "model.yaml"
    assert "parameters.intra_op_thread_count" not in config.reasons
    # what the config does not say, the advisor still fills
    assert config.parameters["inter_op_thread_count"] == "1"
    assert config.reasons["parameters.inter_op_thread_count"].startswith("advisor: ")


def test_a_triton_config_pins_runtime_and_instances(tmp_path: Path) -> None:
    folder = tmp_path / "triton"
    models.addsub_onnx(folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
        "instance_group [{ count: 2 kind: KIND_CPU }]\n"
    )
    config = _load(folder)
    assert config.instance_count == 2 and config.max_batch_size == 4
    assert config.reasons["runtime"] == "platform 'onnxruntime_onnx' in config.pbtxt"
    threads = max(1, probe().physical_cores // 2)  # the cores split between the 2 instances
    assert config.parameters["intra_op_thread_count"] == str(threads)
    assert "the config runs 2 instances" in config.reasons["parameters.intra_op_thread_count"]


def test_declared_shapes_keep_their_batching(tmp_path: Path) -> None:
    folder = tmp_path / "reverse"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(models.TEXT_MODEL)
    (folder / "config.pbtxt").write_text(models.TEXT_CONFIG.replace("max_batch_size: 8\n", ""))
    config = _load(folder)
    assert config.max_batch_size == 0 and config.dynamic_batching is None
    assert config.reasons["instance_count"].startswith("advisor: 1 — a Python model")


def test_an_artifact_the_advisor_cannot_read_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\xff\xff\xff")
    config = ModelConfig("broken", runtime="onnx")
    with caplog.at_level(logging.WARNING, "modelyard.advisor"):
        assert advise_config(config, path) is config
    assert "cannot inspect" in caplog.text
    source = read_entry(path)
    assert source is not None
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        load_version(source, 1, trust_pickle=False)


def test_llm_settings_for_the_llamacpp_runtime(tmp_path: Path) -> None:
    config = ModelConfig("chat", runtime="llamacpp", parameters={"n_seq_max": "2"})
    config.reasons["runtime"] = "file suffix .gguf"
    out = advise_config(config, am.llm_1b(tmp_path / "chat.gguf"), hardware=am.LAPTOP)
    assert out.runtime == "llamacpp"
    assert out.parameters["n_seq_max"] == "2"  # the config's
    assert "kv_size" not in out.parameters  # two sequences named: a context each, as before
    bare = advise_config(ModelConfig("chat", runtime="llamacpp"), tmp_path / "chat.gguf")
    assert int(bare.parameters["kv_size"]) < int(bare.parameters["n_seq_max"]) * 4096
    assert out.parameters["n_ctx"] == "4096" and out.parameters["n_threads"] == "4"
    assert "KV cache" in out.reasons["parameters.n_ctx"]
    embed = advise_config(
        ModelConfig("e", runtime="llamacpp", parameters={"embedding": "true"}),
        am.llm_1b(tmp_path / "e.gguf"),
        hardware=am.LAPTOP,
    )
    assert "n_seq_max" in embed.parameters and "no KV cache" in embed.reasons["parameters.n_ctx"]


def test_memory_budget_refuses_before_loading(tmp_path: Path) -> None:
    big = am.llm_70b(tmp_path / "big.gguf")
    config = ModelConfig("big", runtime="llamacpp", parameters={"n_ctx": "8192"})
    with pytest.raises(ResourceExhausted) as caught:
        refuse_over_budget(config, big, 8 * GiB)
    message = str(caught.value)
    assert "model 'big' needs about" in message and "GiB" in message
    assert "8192 tokens shared by" in message and "budget of 8 GiB" in message
    small = tmp_path / "small.onnx"
    models.addsub_onnx(small)
    refuse_over_budget(ModelConfig("small"), small, 1 * GiB)  # fits
    with pytest.raises(ResourceExhausted, match="already in use"):
        refuse_over_budget(ModelConfig("small"), small, 1 * GiB, used=1 * GiB)


def test_list_shows_the_advisors_choices(tmp_path: Path) -> None:
    models.xgboost_ubj(tmp_path / "iris_xgb.ubj")
    rows = describe_repository(Settings(repositories=(tmp_path,)))
    assert rows[0]["reasons"]["parameters.nthread"].startswith("advisor: 1 — ")
    table = render_table(rows)
    assert "advised: max_queue_delay_us=0, nthread=1, instance_count=" in table


def test_metadata_and_startup_log_carry_the_reasons(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.testclient import TestClient

    from modelyard.server import create_app

    models.addsub_onnx(tmp_path / "addsub.onnx")
    app = create_app(Settings(repositories=(tmp_path,)))
    with caplog.at_level(logging.INFO), TestClient(app) as client:
        metadata = client.get("/v2/models/addsub").json()
    parameters = metadata["parameters"]
    assert parameters["reason.runtime"].startswith("advisor: ")
    assert parameters["reason.parameters.intra_op_thread_count"].startswith("advisor: ")
    assert "the advisor chose parameters.intra_op_thread_count=" in caplog.text
    assert "READY on runtime onnx (advisor: " in caplog.text
