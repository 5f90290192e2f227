"""The search in-process (no front): from the rules' pick, step by step, within its budget;
stopped early it caches nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelyard.advisor.hardware import probe
from modelyard.advisor.tuned import load_tuned
from modelyard.errors import InvalidArgument, Unavailable
from modelyard.repository.scan import ModelSource, read_entry
from modelyard.tuning.search import TuneOptions, tune
from tests import models

pytest.importorskip("onnxruntime")


@pytest.fixture()
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSource:
    monkeypatch.setenv("MODELYARD_CACHE", str(tmp_path / "cache"))
    models.mlp_onnx(tmp_path / "mlp.onnx")
    found = read_entry(tmp_path / "mlp.onnx")
    assert found is not None
    return found


def test_in_process_search_starts_from_the_rules_and_keeps_its_budget(
    source: ModelSource,
) -> None:
    lines: list[str] = []
    started = time.monotonic()
    result = tune(source, TuneOptions(budget_s=6, front=False), progress=lines.append)
    assert time.monotonic() - started < 6 + 5  # the last trial may end past the budget
    assert lines[0] == "mlp: onnx, goal latency; the rules' pick first"
    assert len(result.trials) >= 2
    assert result.pick.default_settings == result.trials[0].settings
    assert result.pick.figures.where == "in-process"
    assert load_tuned(source.versions[1], "latency", probe()) is not None


def test_a_stopped_search_caches_nothing(source: ModelSource) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Unavailable, match="was stopped"):
        tune(source, TuneOptions(budget_s=6, front=False), stop=stop)
    assert load_tuned(source.versions[1], "latency", probe()) is None


def test_a_model_without_knobs_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "text"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(models.TEXT_MODEL)
    (folder / "config.pbtxt").write_text(models.TEXT_CONFIG)
    found = read_entry(folder)
    assert found is not None
    with pytest.raises(InvalidArgument, match="runs on python; modelyard tune searches"):
        tune(found, TuneOptions(budget_s=1, front=False))
