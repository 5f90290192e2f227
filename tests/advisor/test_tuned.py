"""Goals and tuned picks at load: the server's goal and a model's own, `tune: off`, the cache
keyed by artifact and machine, and what a bad value says."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.advisor.apply import advise_config
from modelyard.advisor.hardware import probe
from modelyard.advisor.tuned import (
    Figures,
    TunedPick,
    cache_path,
    digest,
    fingerprint,
    load_tuned,
    save_tuned,
)
from modelyard.errors import ModelLoadError
from modelyard.repository.loader import load_version
from modelyard.repository.scan import read_entry
from modelyard.spec.config import ModelConfig
from tests import models


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MODELYARD_CACHE", str(folder))
    return folder


def _pick(goal: str = "throughput") -> TunedPick:
    return TunedPick(
        runtime="onnx",
        goal=goal,
        settings={"instance_count": 2, "parameters.intra_op_thread_count": 1},
        figures=Figures(rps=16200, p50_ms=0.18, p99_ms=9.5, concurrency=64, where="front"),
        default_settings={"instance_count": 1, "parameters.intra_op_thread_count": 2},
        default_figures=Figures(rps=9100, p50_ms=0.23, p99_ms=12, concurrency=64),
        date="2026-12-02",
        steps=5,
    )


def _model(tmp_path: Path, yaml: str = "") -> Path:
    folder = tmp_path / "mlp"
    models.mlp_onnx(folder / "model.onnx")
    if yaml:
        (folder / "model.yaml").write_text(yaml)
    return folder


def _config(folder: Path, goal: str = "latency") -> ModelConfig:
    source = read_entry(folder)
    assert source is not None and source.error is None, source
    loaded = load_version(source, max(source.versions), False, None, goal)
    loaded.runtime.unload()
    return loaded.config


def test_a_cached_pick_is_applied_with_its_figures_for_its_goal_only(tmp_path: Path) -> None:
    folder = _model(tmp_path, "runtime: onnx\n")
    save_tuned(folder / "model.onnx", _pick(), probe())
    config = _config(folder, goal="throughput")
    assert config.instance_count == 2
    assert config.parameters["intra_op_thread_count"] == "1"
    reason = config.reasons["instance_count"]
    assert reason == (
        "tuned: 2 — measured: 16.2k req/s at c=64, p50 0.18 ms at c=1 (through the HTTP front); "
        "the rules' pick: 9.1k req/s, p50 0.23 ms, 2026-12-02"
    )
    latency = _config(folder, goal="latency")  # no pick measured for this goal
    assert latency.reasons["instance_count"].startswith("advisor: ")


def test_a_models_goal_wins_over_the_servers_and_tune_off_ignores_the_cache(
    tmp_path: Path,
) -> None:
    folder = _model(tmp_path, "runtime: onnx\ngoal: throughput\n")
    save_tuned(folder / "model.onnx", _pick(), probe())
    config = _config(folder, goal="latency")
    assert config.dynamic_batching is not None
    assert config.dynamic_batching.max_queue_delay_us > 0  # the throughput rule's wait
    assert config.reasons["instance_count"].startswith("tuned: 2")
    (folder / "model.yaml").write_text("runtime: onnx\ngoal: throughput\ntune: off\n")
    assert _config(folder).reasons["instance_count"].startswith("advisor: ")


def test_the_config_still_wins_over_a_tuned_pick(tmp_path: Path) -> None:
    folder = _model(tmp_path, "runtime: onnx\ninstances: 3\n")
    save_tuned(folder / "model.onnx", _pick(), probe())
    config = _config(folder, goal="throughput")
    assert config.instance_count == 3
    assert config.parameters["intra_op_thread_count"] == "1"  # the pick, where it is silent


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("goal: fast\n", "parameter goal must be one of latency, throughput, not 'fast'"),
        ("tune: always\n", "parameter tune must be auto or off, not 'always'"),
    ],
)
def test_bad_goal_or_tune_values_say_what_to_write(tmp_path: Path, yaml: str, message: str) -> None:
    folder = _model(tmp_path, "runtime: onnx\n" + yaml)
    with pytest.raises(ModelLoadError, match=message):
        _config(folder)


def test_the_cache_is_keyed_by_artifact_bytes_and_this_machine(tmp_path: Path) -> None:
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    models.mlp_onnx(first)
    models.mlp_onnx(second)  # the same bytes: the same pick
    hw = probe()
    assert digest(first) == digest(second)
    save_tuned(first, _pick(), hw)
    assert load_tuned(second, "throughput", hw) is not None
    other = tmp_path / "c.onnx"
    models.mlp_onnx(other, seed=1)
    assert load_tuned(other, "throughput", hw) is None
    bigger = type(hw)(cores=hw.cores * 2, memory_bytes=hw.memory_bytes)
    assert fingerprint(bigger) != fingerprint(hw)
    assert load_tuned(first, "throughput", bigger) is None


def test_a_damaged_cache_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    artifact = tmp_path / "a.onnx"
    models.mlp_onnx(artifact)
    path = save_tuned(artifact, _pick(), probe())
    path.write_text("{not json")
    assert load_tuned(artifact, "throughput", probe()) is None
    assert "ignoring the tuned config" in caplog.text
    assert cache_path(artifact, "throughput", None, probe()) == path


def test_advise_config_without_any_cache_is_the_rules(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    models.mlp_onnx(artifact)
    config = advise_config(ModelConfig("m"), artifact, goal="throughput")
    assert config.reasons["instance_count"].startswith("advisor: ")


def test_modelyard_list_shows_a_tuned_pick_with_its_figures(tmp_path: Path) -> None:
    from modelyard.listing import describe_repository, render_table
    from modelyard.settings import Settings

    folder = _model(tmp_path, "runtime: onnx\n")
    save_tuned(folder / "model.onnx", _pick(goal="latency"), probe())
    table = render_table(describe_repository(Settings(repositories=(tmp_path,))))
    line = next(line for line in table.splitlines() if line.startswith("    tuned:   "))
    assert "instance_count=2" in line and "intra_op_thread_count=1" in line
    assert "(measured: 16.2k req/s at c=64" in line


def test_a_pick_tuned_under_a_latency_bound_applies_to_models_that_name_it(
    tmp_path: Path,
) -> None:
    folder = _model(tmp_path, "runtime: onnx\nparameters: {latency_ms: 20}\n")
    bounded = _pick()
    bounded.latency_ms = 20.0
    save_tuned(folder / "model.onnx", bounded, probe())
    assert _config(folder, goal="throughput").reasons["instance_count"].startswith("tuned: 2")
    (folder / "model.yaml").write_text("runtime: onnx\n")  # no bound: that pick is not for it
    assert _config(folder, goal="throughput").reasons["instance_count"].startswith("advisor: ")
    (folder / "model.yaml").write_text("runtime: onnx\nparameters: {latency_ms: soon}\n")
    with pytest.raises(ModelLoadError, match="latency_ms must be a positive number"):
        _config(folder)
