"""Python models in their worker processes, through the real server and the real clients: a
crash (segfault, os._exit) or a hang fails only that model's requests, with a clear 5xx, while
other models answer; the worker restarts and the model answers again. Composition calls go
through the server's core; big tensors cross in shared memory; a generator streams over gRPC."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import modelyard
from tests.models import addsub_onnx
from tests.server_process import ServerProcess

FP32_IO = """\
runtime: python
inputs: [{name: x, datatype: FP32, shape: [-1]}]
outputs: [{name: y, datatype: FP32, shape: [-1]}]
"""

CRASHING = """\
import ctypes
import os
import signal
import modelyard


class Crashing(modelyard.Model):
    def predict(self, inputs):
        x = inputs["x"]
        if float(x.sum()) < 0:
            if self.parameters.get("how") == "exit":
                os._exit(1)
            ctypes.string_at(0)  # a segfault
        return {"y": x + 1}
"""

HANGING = """\
import time
import modelyard


class Hanging(modelyard.Model):
    def predict(self, inputs):
        if float(inputs["x"].sum()) < 0:
            time.sleep(3600)
        return {"y": inputs["x"]}
"""

PIPELINE = """\
import numpy as np
import modelyard


class Pipeline(modelyard.Model):
    async def predict(self, inputs):
        x = inputs["x"].reshape(1, 4)
        out = await self.models.infer(
            "addsub", {"INPUT0": x, "INPUT1": np.ones((1, 4), dtype=np.int32)},
            outputs=["OUTPUT0"],
        )
        total = out["OUTPUT0"].reshape(4)
        return {"y": np.where(total > 3, total * 100, total).astype(np.float32)}
"""

SYNC_PIPELINE = """\
import numpy as np
import modelyard


class SyncPipeline(modelyard.Model):
    def predict(self, inputs):
        x = inputs["x"].reshape(1, 4)
        call = self.models.infer("addsub", {"INPUT0": x, "INPUT1": np.zeros((1, 4), np.int32)})
        out = self.models.blocking(call)
        return {"y": out["OUTPUT1"].reshape(4) - 1}
"""

SELF_CALLING = """\
import modelyard


class Narcissus(modelyard.Model):
    async def predict(self, inputs):
        return await self.models.infer("narcissus", inputs)
"""

PING_PONG = """\
import modelyard


class PingPong(modelyard.Model):
    async def predict(self, inputs):
        return await self.models.infer(self.parameters["other"], inputs)
"""

SYNC_PING_PONG = """\
import modelyard


class SyncPingPong(modelyard.Model):
    def predict(self, inputs):
        return self.models.blocking(self.models.infer(self.parameters["other"], inputs))
"""

PID = """\
import os
import signal
import numpy as np
import modelyard


class Pid(modelyard.Model):
    def predict(self, inputs):
        return {"y": inputs["x"] * 2, "pid": np.array([os.getpid()], dtype=np.int64)}

    def unload(self):
        (self.path / "unloaded.txt").write_text(str(os.getpid()))
"""

LEAKY = """\
import os
import numpy as np
import modelyard


class Leaky(modelyard.Model):
    def load(self):
        self.hoard = []

    def predict(self, inputs):
        self.hoard.append(b"x" * (40 << 20))
        return {"y": inputs["x"], "pid": np.array([os.getpid()], dtype=np.int64)}
"""

PID_IO = """\
runtime: python
inputs: [{name: x, datatype: FP32, shape: [-1]}]
outputs: [{name: y, datatype: FP32, shape: [-1]}, {name: pid, datatype: INT64, shape: [1]}]
"""

STREAM = """\
import numpy as np
import modelyard


class Words(modelyard.Model):
    def predict(self, inputs):
        n = int(inputs["N"].reshape(-1)[0])
        for i in range(n):
            yield {"WORD": np.array([f"word{i}".encode()], dtype=object)}
"""

RELAY = """\
import numpy as np
import modelyard


class Relay(modelyard.Model):
    async def predict(self, inputs):
        n = np.array([3], dtype=np.int32)
        words = [r["WORD"][0] async for r in self.models.infer_stream("words", {"N": n})]
        return {"WORD": np.array([b" ".join(words)], dtype=object)}
"""

STREAM_IO = """\
runtime: python
inputs: [{name: N, datatype: INT32, shape: [1]}]
outputs: [{name: WORD, datatype: BYTES, shape: [1]}]
"""


def _model(root: Path, name: str, code: str, config: str, **parameters: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(code)
    extra = "".join(f"\n  {k}: {v!r}" for k, v in parameters.items())
    (folder / "model.yaml").write_text(config + (f"parameters:{extra}\n" if extra else ""))


@pytest.fixture(scope="module")
def worker_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("worker-repo")
    _model(root, "segv", CRASHING, FP32_IO)
    _model(root, "quits", CRASHING, FP32_IO, how="exit")
    _model(root, "hangs", HANGING, FP32_IO, execution_timeout_s="1")
    _model(root, "pipeline", PIPELINE, FP32_IO)
    _model(root, "sync_pipeline", SYNC_PIPELINE, FP32_IO)
    _model(root, "pipeline_thread", PIPELINE, FP32_IO, isolation="thread")
    _model(root, "sync_pipeline_thread", SYNC_PIPELINE, FP32_IO, isolation="thread")
    _model(root, "narcissus", SELF_CALLING, FP32_IO)
    _model(root, "pid", PID, PID_IO)
    _model(root, "pid_thread", PID, PID_IO, isolation="thread")
    _model(root, "goner", PID, PID_IO)
    loop = FP32_IO.replace("runtime: python", "runtime: python\ninstances: 12")
    _model(root, "ping", PING_PONG, loop, other="pong")
    _model(root, "pong", SYNC_PING_PONG, loop, other="ping")
    _model(root, "victim", PID, PID_IO)
    _model(root, "leaky", LEAKY, PID_IO, max_rss_mb="250")
    _model(root, "words", STREAM, STREAM_IO)
    _model(root, "relay", RELAY, STREAM_IO)
    addsub_onnx(root / "addsub" / "1" / "model.onnx")
    (root / "addsub" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    )
    return root


@pytest.fixture(scope="module")
def server(worker_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("worker-logs") / "server.log"
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(worker_repo), *args, log_path=log) as process:
        yield process


def _infer(server: ServerProcess, model: str, x: list[float]) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(x)], "data": x}]}
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def _ready(server: ServerProcess, model: str) -> bool:
    return httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=5).status_code == 200


def _wait_ready(server: ServerProcess, model: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(server, model):
        assert time.monotonic() < deadline, f"{model} did not come back: {server.log()[-3000:]}"
        time.sleep(0.05)


class _Steady:
    """Another model answering throughout, on a thread; counts its answers and failures."""

    def __init__(self, server: ServerProcess) -> None:
        self.client = httpclient.InferenceServerClient(server.http_addr)
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        inputs = [
            httpclient.InferInput("INPUT0", [1, 4], "FP32"),
            httpclient.InferInput("INPUT1", [1, 4], "INT32"),
        ]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(np.ones((1, 4), dtype=np.int32))
        while not self._stop.is_set():
            try:
                out = self.client.infer("addsub", inputs).as_numpy("OUTPUT0")
                assert out is not None and out.tolist() == [[1.0, 2.0, 3.0, 4.0]]
                self.answers += 1
            except Exception as exc:  # counted, asserted on below
                self.failures.append(repr(exc))

    def __enter__(self) -> _Steady:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize(("model", "how"), [("segv", "signal SIGSEGV"), ("quits", "exit code 1")])
def test_a_crash_fails_only_its_requests_and_the_worker_restarts(
    server: ServerProcess, model: str, how: str
) -> None:
    assert _infer(server, model, [1.0]).json()["outputs"][0]["data"] == [2.0]
    with _Steady(server) as steady:
        before = steady.answers
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            crashes = list(pool.map(lambda _: _infer(server, model, [-1.0]), range(4)))
        for response in crashes:
            assert response.status_code in (500, 503), response.text
        first = crashes[0].json()["error"]
        assert f"model {model!r}'s worker process" in first
        assert any(how in r.json()["error"] for r in crashes), [r.text for r in crashes]
        _wait_ready(server, model)
        assert _infer(server, model, [1.0]).json()["outputs"][0]["data"] == [2.0]
        time.sleep(0.2)
    assert steady.answers > before and not steady.failures
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_readiness_is_false_while_the_worker_restarts(server: ServerProcess) -> None:
    assert _ready(server, "segv")
    assert _infer(server, "segv", [-5.0]).status_code == 503
    assert not _ready(server, "segv")  # the restart takes longer than this request
    refused = _infer(server, "segv", [1.0])
    assert refused.status_code == 503 and "restarting" in refused.json()["error"]
    _wait_ready(server, "segv")


def _pid_of(server: ServerProcess, model: str) -> int:
    response = _infer(server, model, [1.0])
    assert response.status_code == 200, response.text
    pid: int = next(o for o in response.json()["outputs"] if o["name"] == "pid")["data"][0]
    return pid


def test_a_worker_killed_while_idle_is_noticed_and_restarted(server: ServerProcess) -> None:
    pid = _pid_of(server, "victim")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:  # the next answers come from a new worker, after some 503s at most
        response = _infer(server, "victim", [1.0])
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _pid_of(server, "victim") != pid
    assert "model victim's worker process died (signal SIGKILL)" in server.log()


def test_a_worker_past_max_rss_mb_is_replaced_without_failing_a_request(
    server: ServerProcess,
) -> None:
    pids = []
    for _ in range(12):  # 40 MB more per call: past 250 MiB within a few calls
        pids.append(_pid_of(server, "leaky"))
        time.sleep(0.55)  # the memory is checked at most twice a second
    assert len(set(pids)) >= 2, pids
    assert "replacing model leaky's worker process: its memory" in server.log()
    first = pids[0]
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{first}") and _state(first) != "Z":
        assert time.monotonic() < deadline, "the replaced worker was not stopped"
        time.sleep(0.05)


def test_a_hang_past_the_execution_timeout_is_killed_and_restarted(
    server: ServerProcess,
) -> None:
    started = time.monotonic()
    response = _infer(server, "hangs", [-1.0])
    assert response.status_code == 504, response.text
    assert "execution_timeout_s (1 s)" in response.json()["error"]
    assert time.monotonic() - started < 5
    _wait_ready(server, "hangs")
    assert _infer(server, "hangs", [3.0]).json()["outputs"][0]["data"] == [3.0]


def test_composition_calls_another_model_through_the_server(server: ServerProcess) -> None:
    for suffix in ("", "_thread"):  # in a worker process, and in the server process
        response = _infer(server, f"pipeline{suffix}", [0.0, 1.0, 2.0, 3.0])
        assert response.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 400.0]
        sync = _infer(server, f"sync_pipeline{suffix}", [5.0, 6.0, 7.0, 8.0])
        assert sync.json()["outputs"][0]["data"] == [4.0, 5.0, 6.0, 7.0]
    stats = httpx.get(f"{server.url}/v2/models/addsub/stats").json()
    assert stats["model_stats"][0]["inference_count"] >= 4  # the calls went through the core


def test_composition_reads_a_decoupled_models_stream(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "N", "datatype": "INT32", "shape": [1], "data": [1]}]}
    response = httpx.post(f"{server.url}/v2/models/relay/infer", json=body, timeout=30)
    assert response.json()["outputs"][0]["data"] == ["word0 word1 word2"]


def test_a_model_outside_a_server_has_no_models_to_call() -> None:
    model = modelyard.Model("alone", 1, Path("."), {})
    with pytest.raises(RuntimeError, match="when a modelyard server runs the model"):
        asyncio.run(model.models.infer("other", {}))


def test_a_model_may_not_call_itself(server: ServerProcess) -> None:
    response = _infer(server, "narcissus", [1.0])
    assert response.status_code == 400
    assert "called itself" in response.json()["error"]


def test_models_calling_each_other_in_a_loop_end_at_the_depth_limit(
    server: ServerProcess,
) -> None:
    response = _infer(server, "ping", [1.0])
    assert response.status_code == 400, response.text
    assert "17 calls deep, past the limit of 16" in response.json()["error"]
    assert _infer(server, "pid", [1.0]).status_code == 200


def test_big_tensors_cross_in_shared_memory(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_addr)
    x = np.random.default_rng(0).random(300_000, dtype=np.float32)  # 1.2 MB each way
    data = httpclient.InferInput("x", [x.size], "FP32")
    data.set_data_from_numpy(x, binary_data=True)
    result = client.infer("pid", [data])
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    pid = int(result.as_numpy("pid")[0])
    assert server.process is not None and pid != server.process.pid
    leftovers = [p for p in os.listdir("/dev/shm") if p.startswith(f"modelyard-c{pid}-")]
    assert not leftovers


def test_isolation_thread_runs_in_the_server_process(server: ServerProcess) -> None:
    body = _infer(server, "pid_thread", [1.0]).json()
    pid = next(o for o in body["outputs"] if o["name"] == "pid")["data"][0]
    assert server.process is not None and pid == server.process.pid


def test_a_generator_streams_through_the_worker_over_grpc(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_addr)
    results: list[object] = []
    done = threading.Event()

    def callback(result: object, error: InferenceServerException | None) -> None:
        results.append(error or result)
        if len(results) == 3 or error is not None:
            done.set()

    n = grpcclient.InferInput("N", [1], "INT32")
    n.set_data_from_numpy(np.array([3], dtype=np.int32))
    client.start_stream(callback=callback)
    try:
        client.async_stream_infer("words", [n])
        assert done.wait(30)
    finally:
        client.stop_stream()
    words = [r.as_numpy("WORD")[0] for r in results if isinstance(r, grpcclient.InferResult)]
    assert words == [b"word0", b"word1", b"word2"]


def test_unloading_runs_unload_in_the_worker_and_stops_it(
    server: ServerProcess, worker_repo: Path
) -> None:
    body = _infer(server, "goner", [1.0]).json()
    pid = next(o for o in body["outputs"] if o["name"] == "pid")["data"][0]
    response = httpx.post(f"{server.url}/v2/repository/models/goner/unload", timeout=30)
    assert response.status_code == 200, response.text
    assert (worker_repo / "goner" / "unloaded.txt").read_text() == str(pid)
    deadline = time.monotonic() + 15
    while os.path.exists(f"/proc/{pid}") and _state(pid) != "Z":
        assert time.monotonic() < deadline, "the worker outlived its model"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except OSError:
        return "gone"


CRASHES_AT_LOAD = """\
import ctypes
import modelyard


class Doomed(modelyard.Model):
    def load(self):
        ctypes.string_at(0)
"""


def test_models_that_cannot_load_are_clear_load_errors(tmp_path: Path) -> None:
    _model(tmp_path, "odd", PID, PID_IO, isolation="container")
    _model(tmp_path, "doomed", CRASHES_AT_LOAD, FP32_IO)
    with ServerProcess(str(tmp_path), "--model-control-mode", "explicit") as process:
        odd = httpx.post(f"{process.url}/v2/repository/models/odd/load", timeout=30)
        doomed = httpx.post(f"{process.url}/v2/repository/models/doomed/load", timeout=30)
        assert httpx.get(f"{process.url}/v2/health/live").status_code == 200
    assert odd.status_code == 400
    assert "isolation must be 'process'" in odd.json()["error"]
    assert doomed.status_code == 400
    assert "worker process died while loading (signal SIGSEGV)" in doomed.json()["error"]


RAG = """\
import numpy as np
import modelyard


class Rag(modelyard.Model):
    async def predict(self, inputs):
        question = inputs["question"].reshape(-1)[0].decode()
        vectors = await self.models.embed("tiny_embed", [question, "another text"])
        answer = await self.models.generate("tiny", question, max_tokens=4, temperature=0)
        return {
            "answer": np.array([answer.encode()], dtype=object),
            "dims": np.array([len(vectors), len(vectors[0])], dtype=np.int64),
        }
"""

RAG_IO = """\
runtime: python
inputs: [{name: question, datatype: BYTES, shape: [1]}]
outputs: [{name: answer, datatype: BYTES, shape: [1]}, {name: dims, datatype: INT64, shape: [2]}]
"""


def test_composition_embeds_and_generates_with_the_servers_llms(tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    from tests.llm_models import tiny_embedding, tiny_gguf

    tiny_gguf(tmp_path / "tiny.gguf")
    tiny_embedding(tmp_path / "tiny_embed")
    _model(tmp_path, "rag", RAG, RAG_IO)
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(tmp_path), *args) as process:
        body = {
            "inputs": [{"name": "question", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]
        }
        response = httpx.post(f"{process.url}/v2/models/rag/infer", json=body, timeout=60)
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        direct = httpx.post(
            f"{process.url}/v1/completions",
            json={"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0},
            timeout=60,
        ).json()
    assert outputs["dims"] == [2, 64]
    assert outputs["answer"] == [direct["choices"][0]["text"]]
