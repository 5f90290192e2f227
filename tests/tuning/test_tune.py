"""`modelyard tune` end to end: the real CLI tunes a tiny ONNX MLP and a tiny XGBoost model
within a 20 s budget each (in-process, then through a real server's HTTP front), caches the
picks, and a server started afterwards loads them, measured figures in their reasons, without
measuring again; `tune: auto` tunes in the background without holding readiness back."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import models
from tests.server_process import ServerProcess

pytest.importorskip("onnxruntime")
pytest.importorskip("xgboost")

BUDGET_S = 20
#: Slack over the budget for a server that starts slowly on a loaded machine.
SLACK_S = 10


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune-repo")
    models.mlp_onnx(root / "mlp.onnx")
    models.xgboost_trees(root / "trees.ubj", trees=30)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tune-cache")


@pytest.fixture(scope="module")
def tuned(repo: Path, cache: Path) -> dict[str, dict[str, object]]:
    """`modelyard tune REPO --budget 20s --json`, as a user runs it."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "modelyard", "tune", str(repo)),
            *("--budget", f"{BUDGET_S}s", "--goal", "throughput", "--json"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MODELYARD_CACHE": str(cache)},
        timeout=2 * (BUDGET_S + SLACK_S) + 60,
    )
    assert done.returncode == 0, done.stderr
    return {pick["name"]: pick for pick in json.loads(done.stdout)}


def _metadata(server: ServerProcess, name: str) -> dict[str, str]:
    answer = httpx.get(f"{server.url}/v2/models/{name}", timeout=10)
    answer.raise_for_status()
    parameters: dict[str, str] = answer.json().get("parameters", {})
    return parameters


def test_each_model_is_tuned_within_its_budget(tuned: dict[str, dict[str, object]]) -> None:
    assert set(tuned) == {"mlp", "trees"}
    for name, pick in tuned.items():
        assert float(str(pick["seconds"])) <= BUDGET_S + SLACK_S, name
        figures = pick["figures"]
        assert isinstance(figures, dict)
        assert figures["rps"] > 0 and figures["p50_ms"] > 0 and figures["concurrency"] == 64
        assert pick["default_figures"], "the rules' pick is measured too"
        assert int(str(pick["steps"])) >= 2, "at least one step from the rules' pick"
        assert Path(str(pick["cache"])).is_file()
    assert "parameters.intra_op_thread_count" in tuned["mlp"]["settings"]  # type: ignore[operator]
    assert "parameters.nthread" in tuned["trees"]["settings"]  # type: ignore[operator]


@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)
def test_an_onnx_model_is_measured_against_its_openvino_ir(
    tuned: dict[str, dict[str, object]],
) -> None:
    ir = tuned["mlp"]["conversion"]
    assert isinstance(ir, dict) and (ir["from"], ir["to"]) == ("onnx", "openvino")
    for runtime in ("onnx", "openvino"):
        rows = ir["rows_per_s"][runtime]
        assert set(rows) == {"1", "64"} and min(rows.values()) > 0
    assert isinstance(ir["worth_it"], bool)
    assert "conversion" not in tuned["trees"]


def _served(repo: Path, cache: Path, log: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        str(repo),
        "--goal",
        "throughput",
        *args,
        env={"MODELYARD_CACHE": str(cache)},
        log_path=log,
    )


def test_a_start_applies_the_cached_picks_with_their_figures(
    repo: Path, cache: Path, tuned: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    with _served(repo, cache, tmp_path / "server.log") as server:
        for name, pick in tuned.items():
            parameters = _metadata(server, name)
            settings = pick["settings"]
            assert isinstance(settings, dict)
            for key, value in settings.items():
                reason = parameters[f"reason.{key}"]
                assert reason.startswith(f"tuned: {value} — measured: "), reason
                assert "req/s at c=64" in reason


@pytest.fixture()
def auto_repo(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "auto-repo"
    folder = root / "automlp"
    folder.mkdir(parents=True)
    models.mlp_onnx(folder / "model.onnx", seed=7)
    (folder / "model.yaml").write_text(
        "runtime: onnx\ntune: auto\nparameters:\n  tune_budget: 8s\n"
    )
    yield root


def test_tune_auto_runs_after_readiness_and_a_second_start_reuses_it(
    auto_repo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = tmp_path / "first.log"
    with _served(auto_repo, cache, first) as server:
        started = time.monotonic()
        parameters = _metadata(server, "automlp")  # ready and serving before any tuning ends
        assert parameters["reason.instance_count"].startswith("advisor: ")
        while "tuned and reloaded" not in first.read_text():
            assert time.monotonic() - started < 60, first.read_text()
            time.sleep(0.5)
        assert _metadata(server, "automlp")["reason.instance_count"].startswith("tuned: ")
    second = tmp_path / "second.log"
    with _served(auto_repo, cache, second) as server:
        assert _metadata(server, "automlp")["reason.instance_count"].startswith("tuned: ")
    assert "tuning in the background" not in second.read_text()


def test_advise_shows_the_rules_pick_and_the_tuned_one_with_their_figures(
    repo: Path, cache: Path, tuned: dict[str, dict[str, object]]
) -> None:
    import jsonschema

    from modelyard.advisor.render import schema

    env = {**os.environ, "MODELYARD_CACHE": str(cache)}
    command = [sys.executable, "-m", "modelyard", "advise", str(repo), "--goal", "throughput"]
    text = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    assert text.count("  tuned    ") == 2 and text.count("rules' pick") == 2
    document = json.loads(
        subprocess.run(
            [*command, "--json"], capture_output=True, text=True, env=env, check=True
        ).stdout
    )
    jsonschema.validate(document, schema())
    for model in document["models"]:
        assert model["tuned"]["settings"] == tuned[model["name"]]["settings"]
        assert model["tuned"]["default_figures"]["rps"] > 0
    latency = [*command[:-1], "latency", "--json"]
    document = json.loads(
        subprocess.run(latency, capture_output=True, text=True, env=env, check=True).stdout
    )
    assert all(m["tuned"] is None for m in document["models"])  # tuned for throughput only


def test_tune_auto_covers_a_model_loaded_later_through_the_repository_api(
    auto_repo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "explicit.log"
    with _served(auto_repo, tmp_path / "cache", log, "--model-control-mode", "explicit") as server:
        assert httpx.get(f"{server.url}/v2/models/automlp/ready", timeout=10).status_code == 400
        loaded = httpx.post(f"{server.url}/v2/repository/models/automlp/load", timeout=60)
        assert loaded.status_code == 200, loaded.text
        started = time.monotonic()
        while "tuned and reloaded" not in log.read_text():
            assert time.monotonic() - started < 60, log.read_text()
            time.sleep(0.5)
        assert _metadata(server, "automlp")["reason.instance_count"].startswith("tuned: ")
