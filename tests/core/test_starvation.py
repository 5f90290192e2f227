"""Issue 17, defect 7: hung in-process models must not starve the server's shared worker
threads unseen. A model holds at most its share of the threads (`max_threads`, by default half
the pool), its requests fail at `execution_timeout_s`, its readiness says it is hung, and the
server's readiness says so when every thread is held by a hung execution."""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.models import addsub_onnx
from tests.server_process import ServerProcess

STUCK = """\
import time
import modelyard


class Stuck(modelyard.Model):
    def predict(self, inputs):
        if float(inputs["x"].sum()) < 0:
            time.sleep(float(self.parameters["stuck_s"]))
        return {"y": inputs["x"]}
"""

STUCK_YAML = """\
runtime: python
instances: 4
inputs: [{name: x, datatype: FP32, shape: [-1]}]
outputs: [{name: y, datatype: FP32, shape: [-1]}]
parameters: {isolation: thread, execution_timeout_s: "0.5", stuck_s: "4"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("starving-repo")
    for name in ("stuck_a", "stuck_b"):
        (root / name).mkdir()
        (root / name / "model.py").write_text(STUCK)
        (root / name / "model.yaml").write_text(STUCK_YAML)
    addsub_onnx(root / "addsub" / "1" / "model.onnx")
    (root / "addsub" / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\n')
    log = tmp_path_factory.mktemp("starving-logs") / "server.log"
    args = ("--workers", "4", "--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(root), *args, log_path=log) as process:
        yield process


def _infer(server: ServerProcess, model: str, x: float) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [x]}]}
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def _addsub(server: ServerProcess) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 4], "data": [1, 1, 1, 1]},
        ]
    }
    return httpx.post(f"{server.url}/v2/models/addsub/infer", json=body, timeout=5)


def _status(server: ServerProcess, path: str) -> int:
    return httpx.get(f"{server.url}{path}", timeout=5).status_code


def test_hung_models_hold_their_share_and_readiness_tells(server: ServerProcess) -> None:
    config = httpx.get(f"{server.url}/v2/models/stuck_a/config").json()
    assert config["instance_group"][0]["count"] == 2  # half of --workers 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        hung = [pool.submit(_infer, server, "stuck_a", -1.0) for _ in range(4)]
        started = time.monotonic()
        first = itertools.islice(concurrent.futures.as_completed(hung), 2)
        for future in first:  # the two that run; the other two wait for a slot
            response = future.result()
            assert response.status_code == 504, response.text
            assert "execution_timeout_s (0.5 s)" in response.json()["error"]
        assert time.monotonic() - started < 3
        # stuck_a holds 2 of the 4 threads: the other models still run, the server is ready
        assert _addsub(server).json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]
        assert _status(server, "/v2/models/stuck_a/ready") == 400
        assert _status(server, "/v2/health/ready") == 200
        more = [pool.submit(_infer, server, "stuck_b", -1.0) for _ in range(2)]
        for future in more:
            assert future.result().status_code == 504
        # now every worker thread is held by a hung execution: the server says so
        assert _status(server, "/v2/health/ready") == 503
        assert _status(server, "/v2/health/live") == 200
        concurrent.futures.wait(hung)
    deadline = time.monotonic() + 20
    while (
        _status(server, "/v2/health/ready") != 200
        or _status(server, "/v2/models/stuck_a/ready") != 200
    ):
        assert time.monotonic() < deadline, "the server did not recover when the hangs ended"
        time.sleep(0.1)
    assert _infer(server, "stuck_a", 2.0).json()["outputs"][0]["data"] == [2.0]


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_bad_max_threads_is_a_clear_load_error(tmp_path: Path, isolation: str) -> None:
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "model.py").write_text(STUCK)
    (tmp_path / "odd" / "model.yaml").write_text(
        STUCK_YAML.replace("isolation: thread", f"isolation: {isolation}, max_threads: lots")
    )
    with ServerProcess(str(tmp_path), "--model-control-mode", "explicit") as process:
        response = httpx.post(f"{process.url}/v2/repository/models/odd/load", timeout=30)
        workers = _children(process)
    assert response.status_code == 400
    assert "max_threads must be a positive integer" in response.json()["error"]
    assert not workers  # a worker that loaded was stopped again


def _children(server: ServerProcess) -> list[int]:
    """The server's live child processes (its workers), once they have had time to end."""
    assert server.process is not None
    deadline = time.monotonic() + 10
    while True:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server.process.pid and fields[0] != "Z":
                children.append(int(stat.parent.name))
        if not children or time.monotonic() > deadline:
            return children
        time.sleep(0.05)
