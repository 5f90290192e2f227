"""Models on demand: load at first request, keep-alive unloading, LRU eviction within a cap or a
memory budget, and never evicting a model that is serving."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelyard.errors import ModelLoadError, ResourceExhausted
from modelyard.repository.residency import ResidencyPolicy, estimate_bytes, expired, victims
from modelyard.settings import parse_duration
from modelyard.spec.config import ModelConfig
from tests import models
from tests.server_process import ServerProcess


@dataclass
class _Model:
    name: str
    estimate: int
    last_used: float
    busy: bool = False
    keep_alive_s: float | None = None


def test_victims_are_least_recently_used_idle_models() -> None:
    loaded = [_Model("a", 100, 3.0), _Model("b", 100, 1.0), _Model("c", 100, 2.0, busy=True)]
    policy = ResidencyPolicy(memory_budget=350)
    assert victims(policy, loaded, "d", 100) == ["b"]
    assert victims(ResidencyPolicy(max_loaded=2), loaded, "d", 1) == ["b", "a"]
    with pytest.raises(ResourceExhausted, match="serving requests"):
        victims(ResidencyPolicy(max_loaded=1), loaded, "d", 1)
    with pytest.raises(ModelLoadError, match="more than the memory budget"):
        victims(policy, loaded, "d", 400)


def test_keep_alive_expiry() -> None:
    model = _Model("a", 1, last_used=10.0)
    assert expired(model, 5.0, now=15.0) and not expired(model, 5.0, now=14.9)
    assert not expired(model, None, now=1e9)
    model.keep_alive_s = 0.0
    assert expired(model, None, now=10.0)
    model.busy = True
    assert not expired(model, 0.0, now=1e9)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("0", 0.0),
        ("-1", None),
        (12, 12.0),
        ("-1s", None),
    ],
)
def test_durations(text: str | int, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def _repo(root: Path) -> Path:
    from onnx import TensorProto

    for name in ("m1", "m2", "m3"):
        models.identity_onnx(root / f"{name}.onnx", TensorProto.FLOAT)
    models.slow_model(root, "slow", "max_batch_size: 0\n", delay=1.0)
    return root


def _infer(client: httpx.Client, name: str) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
    return client.post(f"/v2/models/{name}/infer", json=body)


def _loaded(client: httpx.Client) -> set[str]:
    return {r["name"] for r in client.post("/v2/repository/index", json={"ready": True}).json()}


@pytest.mark.slow
def test_lru_eviction_and_reload_on_demand(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    with (
        ServerProcess(
            str(repo),
            "--model-control-mode",
            "ondemand",
            "--max-loaded-models",
            "2",
            log_path=tmp_path / "log",
        ) as own,
        httpx.Client(base_url=own.url, timeout=30) as client,
    ):
        assert _loaded(client) == set()
        assert _infer(client, "m1").status_code == 200
        assert _infer(client, "m2").status_code == 200
        assert _loaded(client) == {"m1", "m2"}
        assert _infer(client, "m1").status_code == 200  # m2 is now the least recently used
        assert _infer(client, "m3").status_code == 200
        assert _loaded(client) == {"m1", "m3"}
        assert _infer(client, "m2").status_code == 200  # loads again, evicting m1
        assert _loaded(client) == {"m3", "m2"}
        assert _infer(client, "nope").status_code == 404


@pytest.mark.slow
def test_a_model_serving_is_never_evicted(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    slow_body = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}]}

    async def run(url: str) -> tuple[int, int, set[str]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            slow = asyncio.create_task(client.post("/v2/models/slow/infer", json=slow_body))
            await asyncio.sleep(0.4)  # slow is loaded and running
            body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
            other = await client.post("/v2/models/m1/infer", json=body)
            loaded = {
                r["name"]
                for r in (await client.post("/v2/repository/index", json={"ready": True})).json()
            }
            return (await slow).status_code, other.status_code, loaded

    with ServerProcess(
        str(repo),
        "--model-control-mode",
        "ondemand",
        "--max-loaded-models",
        "1",
        log_path=tmp_path / "log",
    ) as own:
        slow_status, other_status, loaded = asyncio.run(run(own.url))
    assert slow_status == 200
    assert other_status == 429  # no room: the only loaded model is busy
    assert loaded == {"slow"}


@pytest.mark.slow
def test_memory_budget_and_keep_alive(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    each = estimate_bytes(ModelConfig("m1", runtime="onnx"), repo / "m1.onnx")
    budget = str(int(each * 2.5))
    with (
        ServerProcess(
            str(repo),
            "--model-control-mode",
            "ondemand",
            "--memory-budget",
            budget,
            "--keep-alive",
            "1s",
            log_path=tmp_path / "log",
        ) as own,
        httpx.Client(base_url=own.url, timeout=30) as client,
    ):
        for name in ("m1", "m2", "m3"):
            assert _infer(client, name).status_code == 200
        assert len(_loaded(client)) == 2
        deadline = time.monotonic() + 5
        while _loaded(client) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _loaded(client) == set()  # idle past the 1 s keep-alive
    with (
        ServerProcess(
            str(repo),
            "--model-control-mode",
            "ondemand",
            "--memory-budget",
            str(each // 2),
            log_path=tmp_path / "log2",
        ) as own,
        httpx.Client(base_url=own.url, timeout=30) as client,
    ):
        response = _infer(client, "m1")
        assert response.status_code == 400
        assert "more than the memory budget" in response.json()["error"]
