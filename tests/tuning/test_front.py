"""The front the search measures through: a real server, reloaded with each configuration
through the repository API, driven with KServe v2 JSON requests."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from modelyard.repository.scan import read_entry
from modelyard.tuning.front import FrontServer
from modelyard.tuning.space import DELAY
from tests import models

pytest.importorskip("onnxruntime")


def test_each_configuration_is_loaded_as_asked_and_measured(tmp_path: Path) -> None:
    models.mlp_onnx(tmp_path / "mlp.onnx")
    source = read_entry(tmp_path / "mlp.onnx")
    assert source is not None
    settings = {"instance_count": 2, "parameters.intra_op_thread_count": 1, DELAY: 500}
    rows = {"x": np.ones((1, 32), dtype=np.float32)}
    with FrontServer(tmp_path, "mlp", trust_pickle=False) as server:
        server.configure(source.config, settings, max_batch_size=256)
        config = httpx.get(f"{server.url}/v2/models/mlp/config", timeout=10).json()
        assert config["max_batch_size"] == 256
        assert config["instance_group"][0]["count"] == 2
        assert config["parameters"]["intra_op_thread_count"]["string_value"] == "1"
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
        figures = server.measure(rows, concurrency=4, seconds=0.3)  # the Python client
    assert figures.where == "front, python client"
    assert figures.rps > 0 and figures.c1_rps > 0 and 0 < figures.p50_ms < figures.p99_ms * 10


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    from modelyard.errors import Internal

    with (
        pytest.raises(Internal, match=r"did not get ready: (.|\n)*is not a folder"),
        FrontServer(tmp_path / "missing", "mlp", trust_pickle=False),
    ):
        pass
