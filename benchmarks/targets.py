"""The servers under test: how each is installed and started, and its wire format.

Every target serves the same `mlp.onnx` with onnxruntime's default threads. Peers run from
their own venvs under `benchmarks/.work/venvs/` with HOME and TMPDIR kept under `.work/`; the
references and modelyard run with the interpreter that runs the benchmark (the repository's
`.venv`, or whichever venv has modelyard installed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from procs import ensure_venv, free_port, libdir, private_env, python

APPS = Path(__file__).parent / "apps"
Group = Literal["reference", "modelyard", "triton", "python"]


@dataclass(frozen=True)
class Setup:
    root: Path  # the repository
    work: Path  # benchmarks/.work
    model: Path
    max_batch: int
    wait_us: int
    #: modelyard's own batching delay: 0 by default, its default config (batches form from
    #: what queues while the model is busy; nothing waits on purpose).
    modelyard_wait_us: int = 0


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    http_port: int
    grpc_port: int = 0


@dataclass(frozen=True)
class Wire:
    """One row of 256 floats as a JSON body in a server's own format, and its answer back."""

    path: str
    encode: Callable[[list[float]], bytes]
    decode: Callable[[bytes], np.ndarray]


def _v2_body(row: list[float]) -> bytes:
    tensor = {"name": "x", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


def _v2_answer(body: bytes) -> np.ndarray:
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    return np.asarray(outputs["y"]["data"], dtype=np.float32).reshape(-1)


def _y_answer(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["y"], dtype=np.float32).reshape(-1)


V2 = Wire("/v2/models/mlp/infer", _v2_body, _v2_answer)
ROW = Wire("/predict", lambda row: json.dumps({"x": row}).encode(), _y_answer)
BENTO = Wire(
    "/predict",
    lambda row: json.dumps({"x": [row]}).encode(),
    lambda body: np.asarray(json.loads(body), dtype=np.float32).reshape(-1),
)


@dataclass(frozen=True)
class Target:
    name: str
    group: Group
    wire: Wire
    launch: Callable[[Setup], Launch]
    note: str
    protocol: Literal["http", "grpc"] = "http"
    checked: bool = True  # the floor answers a constant


# ---- peers' venvs ------------------------------------------------------------------------------

VENVS: dict[str, tuple[int, list[str]]] = {
    "triton": (12, ["nvidia-pytriton==0.7.0", "onnxruntime", "numpy"]),
    "fastapi": (11, ["fastapi", "uvicorn[standard]", "onnxruntime", "numpy"]),
    "litserve": (11, ["litserve==0.2.19", "onnxruntime", "numpy"]),
    "mlserver": (11, ["mlserver==1.7.1", "uvloop<0.22", "onnxruntime", "numpy"]),
    "bentoml": (11, ["bentoml==1.4.40", "onnxruntime", "numpy"]),
    "ray": (11, ["ray[serve]==2.60.0", "onnxruntime", "numpy"]),
}


def _venv(setup: Setup, name: str) -> Path:
    minor, requirements = VENVS[name]
    return ensure_venv(setup.work, name, python(minor), requirements)


def _bench_env(setup: Setup, name: str, port: int) -> dict[str, str]:
    return {
        **private_env(setup.work, name),
        "BENCH_MODEL": str(setup.model),
        "BENCH_PORT": str(port),
        "BENCH_MAX_BATCH": str(setup.max_batch),
        "BENCH_WAIT_US": str(setup.wait_us),
    }


def _scratch(setup: Setup, name: str) -> Path:
    folder = setup.work / "scratch" / name
    shutil.rmtree(folder, ignore_errors=True)
    return folder


# ---- launches ----------------------------------------------------------------------------------


def _raw(mode: str) -> Callable[[Setup], Launch]:
    def launch(setup: Setup) -> Launch:
        port = free_port()
        env = {**_bench_env(setup, mode, port), "BENCH_MODE": mode}
        argv = [sys.executable, str(APPS / "raw_asgi.py")]
        return Launch(argv, env, setup.root, port)

    return launch


def _modelyard(setup: Setup) -> Launch:
    repo = _scratch(setup, "modelyard") / "repo"
    (repo / "mlp" / "1").mkdir(parents=True)
    shutil.copy(setup.model, repo / "mlp" / "1" / "model.onnx")
    (repo / "mlp" / "config.pbtxt").write_text(
        'name: "mlp"\nplatform: "onnxruntime_onnx"\n'
        f"max_batch_size: {setup.max_batch}\n"
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 256 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        + (
            f"dynamic_batching {{ max_queue_delay_microseconds: {setup.modelyard_wait_us} }}\n"
            if setup.modelyard_wait_us
            else ""
        )
    )
    http, grpc = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "modelyard",
        "serve",
        str(repo),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--log-level",
        "warning",
    ]
    return Launch(argv, dict(os.environ), setup.root, http, grpc)


def _modelyard_baseline(setup: Setup) -> Launch:
    """modelyard from another checkout's sources (MODELYARD_BASELINE=/path/to/checkout/src, e.g.
    a `git worktree` of an earlier commit), in this repository's venv: before and after a
    change, measured side by side in one run."""
    source = os.environ.get("MODELYARD_BASELINE")
    if not source or not (Path(source) / "modelyard" / "__init__.py").is_file():
        raise SystemExit(
            "target modelyard-baseline needs MODELYARD_BASELINE=<a checkout>/src, e.g. "
            "git worktree add /tmp/base COMMIT && MODELYARD_BASELINE=/tmp/base/src"
        )
    launch = _modelyard(setup)
    launch.env["PYTHONPATH"] = source
    return launch


def _triton(setup: Setup) -> Launch:
    venv = _venv(setup, "triton")
    http = free_port()
    env = _bench_env(setup, "triton", http)
    lib = libdir(python(12))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    grpc = free_port()
    env["BENCH_GRPC_PORT"], env["BENCH_METRICS_PORT"] = str(grpc), str(free_port())
    env["BENCH_SCRATCH"] = str(_scratch(setup, "triton"))  # pytriton wants it not to exist
    argv = [str(venv / "bin/python"), str(APPS / "triton_app.py")]
    return Launch(argv, env, setup.root, http, grpc)


def _script(name: str, script: str) -> Callable[[Setup], Launch]:
    def launch(setup: Setup) -> Launch:
        venv, port = _venv(setup, name), free_port()
        cwd = _scratch(setup, name)
        cwd.mkdir(parents=True)
        argv = [str(venv / "bin/python"), str(APPS / script)]
        return Launch(argv, _bench_env(setup, name, port), cwd, port)

    return launch


def _mlserver(setup: Setup) -> Launch:
    venv, port = _venv(setup, "mlserver"), free_port()
    folder = _scratch(setup, "mlserver")
    (folder / "mlp").mkdir(parents=True)
    shutil.copy(APPS / "mlserver_runtime.py", folder / "mlp" / "mlserver_runtime.py")
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    model = {
        "name": "mlp",
        "implementation": "mlserver_runtime.MLP",
        "max_batch_size": setup.max_batch,
        "max_batch_time": setup.wait_us / 1e6,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "mlp" / "model-settings.json").write_text(json.dumps(model))
    argv = [str(venv / "bin/mlserver"), "start", str(folder)]
    return Launch(argv, _bench_env(setup, "mlserver", port), folder, port)


def _bentoml(setup: Setup) -> Launch:
    venv, port = _venv(setup, "bentoml"), free_port()
    argv = [
        str(venv / "bin/bentoml"),
        "serve",
        "bento_app:MLP",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Launch(argv, _bench_env(setup, "bentoml", port), APPS, port)


TARGETS: list[Target] = [
    Target(
        "floor",
        "reference",
        V2,
        _raw("floor"),
        checked=False,
        note="raw ASGI app on uvicorn (uvloop, httptools), constant answer: the HTTP floor",
    ),
    Target(
        "inline",
        "reference",
        V2,
        _raw("inline"),
        note="raw ASGI app on uvicorn, parses v2 JSON, runs the model inline at batch 1",
    ),
    Target(
        "modelyard",
        "modelyard",
        V2,
        _modelyard,
        note="modelyard serve, KServe v2 JSON over HTTP, config.pbtxt with its default batching",
    ),
    Target(
        "modelyard-baseline",
        "reference",
        V2,
        _modelyard_baseline,
        note="modelyard serve from MODELYARD_BASELINE's sources (an earlier commit), same config",
    ),
    Target(
        "modelyard-grpc",
        "modelyard",
        V2,
        _modelyard,
        protocol="grpc",
        note="the same server over KServe v2 gRPC, driven by grpc_load.py (not wrk)",
    ),
    Target(
        "triton",
        "triton",
        V2,
        _triton,
        note="tritonserver from nvidia-pytriton 0.7.0, Python callable, dynamic batcher",
    ),
    Target(
        "fastapi",
        "python",
        ROW,
        _script("fastapi", "fastapi_app.py"),
        note="plain FastAPI endpoint, pydantic body, model inline in a sync handler",
    ),
    Target(
        "litserve",
        "python",
        ROW,
        _script("litserve", "litserve_app.py"),
        note="LitServe 0.2.19, max_batch_size/batch_timeout",
    ),
    Target(
        "mlserver",
        "python",
        V2,
        _mlserver,
        note="MLServer 1.7.1 custom runtime, adaptive batching, 1 parallel worker",
    ),
    Target("bentoml", "python", BENTO, _bentoml, note="BentoML 1.4.40, batchable API, 1 worker"),
    Target(
        "ray",
        "python",
        ROW,
        _script("ray", "ray_app.py"),
        note="Ray Serve 2.60, one replica, @serve.batch, max_ongoing_requests 1024",
    ),
]
