"""The search space: each runtime's knobs, one step along one knob, a candidate pinned so the
advisor leaves it as it is."""

from __future__ import annotations

from pathlib import Path

from modelyard.advisor.apply import advise_config
from modelyard.advisor.hardware import Hardware
from modelyard.spec.config import ModelConfig
from modelyard.tuning.space import DELAY, knobs, neighbours, pinned_config, start_from
from tests import models

TWO_CORES = Hardware(cores=2, physical_cores=2, memory_bytes=8 * 2**30)


def test_each_runtime_has_its_knobs() -> None:
    runtimes = ("onnx", "openvino", "xgboost")
    keys = {r: [k.key for k in knobs(r, TWO_CORES, batched=True)] for r in runtimes}
    assert keys["onnx"] == ["instance_count", "parameters.intra_op_thread_count", DELAY]
    assert keys["openvino"] == ["instance_count", "parameters.INFERENCE_NUM_THREADS", DELAY]
    assert keys["xgboost"] == ["instance_count", "parameters.nthread", DELAY]
    assert [k.key for k in knobs("sklearn", TWO_CORES, batched=False)] == ["instance_count"]


def test_one_step_along_one_knob() -> None:
    space = knobs("onnx", TWO_CORES, batched=True)
    start = start_from({"instance_count": 1, "parameters.intra_op_thread_count": 2}, space)
    assert start == {"instance_count": 1, "parameters.intra_op_thread_count": 2, DELAY: 0}
    steps = neighbours(start, space)
    assert {"instance_count": 2, "parameters.intra_op_thread_count": 2, DELAY: 0} in steps
    assert {"instance_count": 1, "parameters.intra_op_thread_count": 1, DELAY: 0} in steps
    assert {"instance_count": 1, "parameters.intra_op_thread_count": 2, DELAY: 500} in steps
    assert len(steps) == 3  # nothing below 1 instance, nothing past 2 threads


def test_a_candidate_is_pinned_against_the_advisor_and_the_cache(tmp_path: Path) -> None:
    settings = {"instance_count": 2, "parameters.nthread": 1, DELAY: 500}
    pinned = pinned_config(ModelConfig("m", runtime="xgboost"), settings)
    assert pinned.parameters["tune"] == "off"
    path = tmp_path / "m.ubj"
    models.xgboost_trees(path, trees=2)
    config = advise_config(pinned, path, goal="latency", hardware=TWO_CORES)
    assert config.instance_count == 2 and config.parameters["nthread"] == "1"
    assert config.dynamic_batching is not None and config.dynamic_batching.max_queue_delay_us == 500


def test_the_goals_score() -> None:
    from modelyard.advisor.tuned import Figures
    from modelyard.tuning.search import score

    fast = Figures(rps=10_000, p50_ms=0.2, p99_ms=30, concurrency=64)
    steady = Figures(rps=8_000, p50_ms=0.3, p99_ms=8, concurrency=64)
    assert score(fast, "throughput", None) > score(steady, "throughput", None)
    assert score(fast, "latency", None) > score(steady, "latency", None)
    # under a 10 ms bound on p99 the faster one does not count: Model Analyzer's constraint
    assert score(steady, "throughput", 10) > score(fast, "throughput", 10) == 0


def test_the_pick_as_config_reads_back_as_the_same_settings() -> None:
    import yaml

    from modelyard.repository.config import from_yaml, parse_pbtxt
    from modelyard.tuning.search import as_config

    settings = {"instance_count": 2, "parameters.nthread": 1, DELAY: 500}
    triton = parse_pbtxt("\n".join(as_config(settings, "triton")), "m")
    simple = from_yaml(yaml.safe_load("\n".join(as_config(settings, "simple"))), "m")
    for config in (triton, simple):
        assert config.instance_count == 2 and config.parameters == {"nthread": "1"}
        assert config.dynamic_batching is not None
        assert config.dynamic_batching.max_queue_delay_us == 500
