"""A 3-step pipeline (Python preprocess -> the benchmark MLP in ONNX -> Python postprocess)
on modelyard, beside the MLP alone on modelyard, the same pipeline as a Ray Serve composition,
and Triton's own ensemble of the same steps, in one run.

    .venv/bin/python benchmarks/pipeline.py [--targets ...] [--duration 15] [--warmup 5]
        [--concurrency 1,64]

The steps: `xs = 2x - 1` (preprocess), the MLP (`xs` -> `y`), `probs = softmax(y)`
(postprocess). Every target is checked against that computed in-process, then driven like
benchmarks/serving.py (wrk, one row of 256 floats as JSON). After each modelyard pipeline
target the script prints the per-step batch sizes from the server's statistics: under load each
step should run batches, not single rows. See docs/benchmarks.md ("Pipelines").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import mlp
import numpy as np
import procs
from report import Outcome, table
from serving import ROOT, WORK, Bench, Reference, _header, _Live
from targets import V2, Launch, Setup, Target, Wire, _bench_env, _scratch, _venv

APPS = Path(__file__).parent / "apps"
STEPS = ("pre", "mlp", "post")


def _softmax(y: np.ndarray) -> np.ndarray:
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _probs_v2(body: bytes) -> np.ndarray:
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    return np.asarray(outputs["probs"]["data"], dtype=np.float32).reshape(-1)


PIPELINE_V2 = Wire("/v2/models/pipeline/infer", V2.encode, _probs_v2)
PIPELINE_ROW = Wire(
    "/predict",
    lambda row: json.dumps({"x": row}).encode(),
    lambda body: np.asarray(json.loads(body)["probs"], dtype=np.float32).reshape(-1),
)

# ---- the steps, as modelyard models and as Triton Python-backend models ---------------------

MODELYARD_PRE = textwrap.dedent("""\
    import numpy as np
    import modelyard


    class Pre(modelyard.Model):
        def predict(self, inputs):
            return {"xs": inputs["x"] * np.float32(2.0) - np.float32(1.0)}
    """)

MODELYARD_POST = textwrap.dedent("""\
    import numpy as np
    import modelyard


    class Post(modelyard.Model):
        def predict(self, inputs):
            y = inputs["y"]
            e = np.exp(y - y.max(axis=1, keepdims=True))
            return {"probs": e / e.sum(axis=1, keepdims=True)}
    """)

TRITON_STEP = textwrap.dedent("""\
    import json

    import numpy as np
    import triton_python_backend_utils as pb_utils


    def pre(x):
        return x * np.float32(2.0) - np.float32(1.0)


    def post(y):
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            self.input = config["input"][0]["name"]
            self.output = config["output"][0]["name"]
            self.step = config["parameters"]["step"]["string_value"]
            if self.step == "mlp":
                import onnxruntime as ort

                self.session = ort.InferenceSession(
                    config["parameters"]["onnx"]["string_value"],
                    providers=["CPUExecutionProvider"],
                )

        def run(self, x):
            if self.step == "mlp":
                return self.session.run(None, {"x": x})[0]
            return pre(x) if self.step == "pre" else post(x)

        def execute(self, requests):
            arrays = [
                pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests
            ]
            out = self.run(np.concatenate(arrays)).astype(np.float32)
            responses, start = [], 0
            for a in arrays:
                part = out[start : start + len(a)]
                start += len(a)
                tensor = pb_utils.Tensor(self.output, part)
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            return responses
    """)


def _step_config(
    name: str, backend: str, io: tuple[str, int, str, int], max_batch: int, wait_us: int
) -> str:
    source, source_dims, target, target_dims = io
    lines = [
        f'name: "{name}"',
        backend,
        f"max_batch_size: {max_batch}",
        f'input [ {{ name: "{source}" data_type: TYPE_FP32 dims: [ {source_dims} ] }} ]',
        f'output [ {{ name: "{target}" data_type: TYPE_FP32 dims: [ {target_dims} ] }} ]',
    ]
    if wait_us:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {wait_us} }}")
    return "\n".join(lines) + "\n"


IO = {"pre": ("x", 256, "xs", 256), "mlp": ("x", 256, "y", 10), "post": ("y", 10, "probs", 10)}


def _ensemble(max_batch: int) -> str:
    maps = {"pre": ("x", "x", "xs", "xs"), "mlp": ("x", "xs", "y", "y")}
    maps["post"] = ("y", "y", "probs", "probs")
    steps = ",\n".join(
        f'    {{ model_name: "{step}" model_version: -1\n'
        f'      input_map {{ key: "{k_in}" value: "{v_in}" }}\n'
        f'      output_map {{ key: "{k_out}" value: "{v_out}" }} }}'
        for step, (k_in, v_in, k_out, v_out) in maps.items()
    )
    return (
        f'name: "pipeline"\nplatform: "ensemble"\nmax_batch_size: {max_batch}\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 256 ] } ]\n'
        'output [ { name: "probs" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        f"ensemble_scheduling {{ step [\n{steps}\n] }}\n"
    )


def _modelyard_repo(setup: Setup, name: str, flavour: str) -> Path:
    """The pipeline as a Triton-style repository for modelyard: the MLP as an ONNX model, the
    Python steps as modelyard models ("modelyard", "thread") or Triton Python models ("pb")."""
    repo = _scratch(setup, name) / "repo"
    for step in STEPS:
        (repo / step / "1").mkdir(parents=True)
        extra = ""
        if step == "mlp":
            shutil.copy(setup.model, repo / step / "1" / "model.onnx")
            backend = 'platform: "onnxruntime_onnx"'
        elif flavour == "pb":
            (repo / step / "1" / "model.py").write_text(TRITON_STEP)
            backend = 'backend: "python"'
            extra = f'parameters {{ key: "step" value: {{ string_value: "{step}" }} }}\n'
        else:
            code = MODELYARD_PRE if step == "pre" else MODELYARD_POST
            (repo / step / "1" / "model.py").write_text(code)
            backend = 'backend: "python"'
            if flavour == "thread":
                extra = 'parameters { key: "isolation" value: { string_value: "thread" } }\n'
        config = _step_config(step, backend, IO[step], setup.max_batch, setup.modelyard_wait_us)
        (repo / step / "config.pbtxt").write_text(config + extra)
    (repo / "pipeline" / "1").mkdir(parents=True)
    (repo / "pipeline" / "config.pbtxt").write_text(_ensemble(setup.max_batch))
    return repo


def _modelyard(flavour: str) -> Callable[[Setup], Launch]:
    def launch(setup: Setup) -> Launch:
        repo = _modelyard_repo(setup, f"modelyard-{flavour}", flavour)
        http, grpc = procs.free_port(), procs.free_port()
        argv = [sys.executable, "-m", "modelyard", "serve", str(repo)]
        argv += ["--http-port", str(http), "--grpc-port", str(grpc), "--log-level", "warning"]
        return Launch(argv, dict(os.environ), setup.root, http, grpc)

    return launch


def _modelyard_mlp(setup: Setup) -> Launch:
    launch = _modelyard("modelyard")(setup)
    launch.argv[4] = str(Path(launch.argv[4]) / "mlp")  # serve the MLP's folder alone
    return launch


def _triton_ensemble(setup: Setup) -> Launch:
    """tritonserver from nvidia-pytriton's wheel, run as a plain server on a model repository:
    the three steps as Python-backend models (the MLP through onnxruntime inside its step: the
    wheel ships no onnxruntime backend) and Triton's ensemble scheduler."""
    venv = _venv(setup, "triton")
    site = next((venv / "lib").glob("python3.*/site-packages"))
    server = site / "pytriton" / "tritonserver"
    repo = _scratch(setup, "triton-ensemble") / "repo"
    for step in STEPS:
        (repo / step / "1").mkdir(parents=True)
        (repo / step / "1" / "model.py").write_text(TRITON_STEP)
        extra = f'parameters {{ key: "step" value: {{ string_value: "{step}" }} }}\n'
        extra += f'parameters {{ key: "onnx" value: {{ string_value: "{setup.model}" }} }}\n'
        config = _step_config(step, 'backend: "python"', IO[step], setup.max_batch, setup.wait_us)
        (repo / step / "config.pbtxt").write_text(config + extra)
    (repo / "pipeline" / "1").mkdir(parents=True)
    (repo / "pipeline" / "config.pbtxt").write_text(_ensemble(setup.max_batch))
    # as pytriton does at start: the Python backend with the stub built for this Python
    backends = _scratch(setup, "triton-backends")
    shutil.copytree(server / "backends", backends)
    stub = server / "python_backend_stubs" / "3.12" / "triton_python_backend_stub"
    shutil.copy(stub, backends / "python" / stub.name)
    http, grpc = procs.free_port(), procs.free_port()
    env = _bench_env(setup, "triton", http)
    lib = procs.libdir(procs.python(12))
    paths = [lib, str(site / "nvidia_pytriton.libs")]  # the stub links the wheel's own libraries
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*paths, env.get("LD_LIBRARY_PATH")]))
    # the stub's embedded Python finds its packages from the `python3` on the PATH (as pytriton
    # sets it up)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env["PATH"]])
    argv = [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={procs.free_port()}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--log-verbose=0",
    ]
    return Launch(argv, env, repo, http, grpc)


def _ray(setup: Setup) -> Launch:
    venv, port = _venv(setup, "ray"), procs.free_port()
    cwd = _scratch(setup, "ray-pipeline")
    cwd.mkdir(parents=True)
    argv = [str(venv / "bin/python"), str(APPS / "ray_pipeline_app.py")]
    return Launch(argv, _bench_env(setup, "ray", port), cwd, port)


TARGETS = [
    Target("modelyard-mlp", "modelyard", V2, _modelyard_mlp, note="the MLP alone on modelyard"),
    Target(
        "modelyard-pipeline",
        "modelyard",
        PIPELINE_V2,
        _modelyard("modelyard"),
        note="ensemble: modelyard Python models (worker process) -> ONNX -> Python",
    ),
    Target(
        "modelyard-pipeline-thread",
        "modelyard",
        PIPELINE_V2,
        _modelyard("thread"),
        note="the same, Python steps in the server process (isolation: thread)",
    ),
    Target(
        "modelyard-pipeline-pb",
        "modelyard",
        PIPELINE_V2,
        _modelyard("pb"),
        note="the same ensemble with Triton Python-backend steps (pb_utils)",
    ),
    Target(
        "ray-pipeline",
        "python",
        PIPELINE_ROW,
        _ray,
        note="Ray Serve 2.60 composition: 3 deployments, DeploymentHandle chain, @serve.batch",
    ),
    Target(
        "triton-ensemble",
        "triton",
        PIPELINE_V2,
        _triton_ensemble,
        note="tritonserver (nvidia-pytriton 0.7.0) ensemble of 3 Python-backend steps",
    ),
]


def _step_batches(port: int) -> str:
    """Each step's executions and rows from the server's statistics (Triton's shape)."""
    parts = []
    for step in STEPS:
        try:
            stats = httpx.get(f"http://127.0.0.1:{port}/v2/models/{step}/stats", timeout=10)
            model = stats.json()["model_stats"][0]
            rows, runs = model["inference_count"], model["execution_count"]
            parts.append(
                f"{step}: {rows} rows in {runs} executions ({rows / max(runs, 1):.1f}/batch)"
            )
        except Exception as exc:  # a target without per-step statistics
            parts.append(f"{step}: no statistics ({type(exc).__name__})")
    return "; ".join(parts)


class PipelineBench(Bench):
    """Bench with two answers: the MLP's for the MLP alone, the pipeline's for the rest; and
    each modelyard pipeline's per-step batch sizes after its load."""

    def __init__(self, args: argparse.Namespace, setup: Setup) -> None:
        session = mlp.session(setup.model)
        self.alone: Reference = lambda rows: mlp.reference(session, rows)
        self.piped: Reference = lambda rows: _softmax(self.alone(rows * 2.0 - 1.0))
        self.batches: dict[str, str] = {}
        super().__init__(args, setup, self.piped)

    def _pick(self, live: _Live) -> None:
        alone = live.outcome.target.name == "modelyard-mlp"
        self.reference = self.alone if alone else self.piped

    def _start(self, live: _Live) -> None:
        self._pick(live)
        super()._start(live)

    def _check_again(self, live: _Live) -> None:
        self._pick(live)
        super()._check_again(live)
        target = live.outcome.target
        if target.group == "modelyard" and target.name != "modelyard-mlp" and live.launch:
            self.batches[target.name] = _step_batches(live.launch.http_port)
            print(f"{target.name} batches: {self.batches[target.name]}", flush=True)


def _ratios(outcomes: list[Outcome], levels: list[int]) -> list[str]:
    """Each modelyard pipeline against the MLP alone, Ray Serve's composition and Triton."""
    by_name = {o.target.name: o for o in outcomes}
    lines = []
    for outcome in outcomes:
        if not outcome.target.name.startswith("modelyard-pipeline"):
            continue
        for c in levels:
            mine = outcome.cells.get(c)
            if mine is None:
                continue
            parts = []
            for other, label in (
                ("modelyard-mlp", "of the MLP alone"),
                ("ray-pipeline", "x Ray Serve's composition"),
                ("triton-ensemble", "x Triton's ensemble"),
            ):
                theirs = by_name.get(other)
                if theirs is not None and c in theirs.cells:
                    ratio = mine.rps / theirs.cells[c].rps
                    parts.append(
                        f"{ratio:.0%} {label}"
                        if other == "modelyard-mlp"
                        else f"{ratio:.2f}{label}"
                    )
            lines.append(
                f"{outcome.target.name} c={c}: {mine.rps:,.0f} req/s = " + ", ".join(parts)
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    names = [t.name for t in TARGETS]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", default=",".join(names), help=", ".join(names))
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-us", type=int, default=2000, help="the peers' batching delay")
    parser.add_argument("--modelyard-wait-us", type=int, default=0)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    unknown = set(args.targets.split(",")) - set(names)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = [t for t in TARGETS if t.name in args.targets.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    header = _header(args)
    print(header, file=sys.stderr, flush=True)
    model = mlp.build(WORK / "model" / "mlp.onnx")
    setup = Setup(ROOT, WORK, model, args.max_batch, args.max_wait_us, args.modelyard_wait_us)
    bench = PipelineBench(args, setup)
    outcomes = bench.run(targets)
    lines = table(outcomes, args.concurrency)
    lines += ["", *[f"- {o.target.name}: {o.error}" for o in outcomes if o.error]]
    lines += [*_ratios(outcomes, args.concurrency), ""]
    lines += [f"{name} batches: {text}" for name, text in bench.batches.items()]
    lines += ["", "targets:"] + [f"- {o.target.name}: {o.target.note}" for o in outcomes]
    text = header + "\n\n" + "\n".join(lines)
    print(text)
    procs.save_results(WORK, "pipeline", text, {"header": header, "batches": bench.batches})


if __name__ == "__main__":
    main()
