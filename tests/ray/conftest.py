"""One local multi-node Ray cluster for the Ray tests that need one (`ray_app`): a head node
and two worker nodes (`ray.cluster_utils.Cluster`, each node its own raylet), Ray Serve with
its proxy on the head, and the application `build_app` makes of a test repository (as
`serve run` makes it). Started once, at the first test that asks, and shut down at the end.

The head has no CPUs, so every model replica runs on a worker node; the ingress is pinned to
the head (`ingress_node: head`), so a worker node can leave without taking the front with it.
Each node has more logical CPUs than the machine has cores: Ray places by reservation, and the
replicas here sleep or idle more than they compute."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.models import addsub_onnx, mlp_onnx, sklearn_skops
from tests.server_process import free_port

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
#: Logical CPUs of each worker node: one node alone must hold every replica (a node leaves).
WORKER_CPUS = 16
#: Seconds a node may take to join (a raylet starting on a busy 2-core machine took > 30).
NODE_START_S = 180

#: The model the autoscaling test loads: one execution at a time, `delay` seconds each.
SLOW_MODEL = textwrap.dedent("""\
    import time

    import modelyard


    class Slow(modelyard.Model):
        def load(self):
            self.delay = float(self.parameters.get("delay", "0.1"))

        def predict(self, inputs):
            time.sleep(self.delay)
            return {"Y": inputs["X"]}
    """)
#: Its autoscaling: Ray's delays made short so that the test sees both directions.
SLOW_SCALING = {
    "min_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 4,
    "upscale_delay_s": 1,
    "downscale_delay_s": 4,
    "look_back_period_s": 2,
    "metrics_interval_s": 0.5,
}


@dataclass
class RayApp:
    proxy: str  # Ray's HTTP proxy
    own: str  # the ingress's own port
    grpc_proxy: str  # Ray's gRPC proxy
    grpc_own: str  # the ingress's own gRPC port
    repository: Path
    estimator: Any  # iris's scikit-learn model, as fitted here
    cluster: Any  # ray.cluster_utils.Cluster
    args: dict[str, Any]  # build_app's


def slow_yaml(scaling: dict[str, float], delay: float) -> str:
    section = ", ".join(f"{key}: {value}" for key, value in scaling.items())
    return textwrap.dedent(f"""\
        runtime: python
        inputs: [{{name: X, datatype: FP32, shape: [1]}}]
        outputs: [{{name: Y, datatype: FP32, shape: [1]}}]
        parameters: {{delay: "{delay}"}}
        autoscaling: {{{section}}}
        """)


def _repository(root: Path) -> Any:
    mlp = root / "mlp"
    mlp.mkdir(parents=True)
    mlp_onnx(mlp / "model.onnx")
    (mlp / "model.yaml").write_text("instances: 2\n")  # two replicas, for the fault tests
    estimator = sklearn_skops(root / "iris.skops")
    addsub_onnx(root / "addsub" / "1" / "model.onnx", scale=1.0)  # version 2 comes in a test
    (root / "addsub" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    )
    (root / "slow").mkdir()
    (root / "slow" / "model.py").write_text(SLOW_MODEL)
    (root / "slow" / "model.yaml").write_text(slow_yaml(SLOW_SCALING, 0.1))
    if HAS_LLAMA:
        from tests.llm_models import tiny_gguf

        (root / "tiny").mkdir()
        tiny_gguf(root / "tiny" / "model.gguf")
        (root / "tiny" / "model.yaml").write_text("instances: 2\n")  # for the affinity test
    return estimator


@pytest.fixture(scope="session")
def ray_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayApp]:
    pytest.importorskip("ray.serve")
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.serve.config import gRPCOptions

    repository = tmp_path_factory.mktemp("ray-repo")
    estimator = _repository(repository)
    # a temp dir of its own (short: Ray's socket paths live in it), beside other Ray instances
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={"num_cpus": 0, "temp_dir": temp, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            cluster.add_node(wait=False, num_cpus=WORKER_CPUS)
        cluster.wait_for_nodes(timeout=NODE_START_S)
        from modelyard.ray import build_app
        from modelyard.ray.grpc_service import SERVICER_FUNCTION

        proxy, own, grpc_proxy, grpc_own = (free_port() for _ in range(4))
        serve.start(
            proxy_location="HeadOnly",  # one port for each proxy: the nodes share one machine
            http_options={"host": "127.0.0.1", "port": proxy},
            grpc_options=gRPCOptions(port=grpc_proxy, grpc_servicer_functions=[SERVICER_FUNCTION]),
            logging_config={"enable_access_log": False},
        )
        args = {
            "repository": str(repository),
            "port": own,
            "grpc_port": grpc_own,
            "ingress_node": "head",
        }
        serve.run(build_app(args), name="modelyard", route_prefix="/")
        print(
            f"\nRay cluster (3 nodes) and the application up in {time.monotonic() - started:.1f} s"
        )
        at = "127.0.0.1:{}".format
        yield RayApp(
            at(proxy), at(own), at(grpc_proxy), at(grpc_own), repository, estimator, cluster, args
        )
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call, unused-ignore]
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call, unused-ignore]
        shutil.rmtree(temp, ignore_errors=True)


def replica_nodes(deployment: str) -> dict[str, str]:
    """The live replicas of a deployment of the application: actor name -> node id."""
    import ray
    from ray.exceptions import RayActorError

    nodes: dict[str, str] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        if f"#{deployment}#" not in name:
            continue
        try:
            actor = ray.get_actor(name, namespace=entry["namespace"])
            where: Any = actor.__ray_call__.remote(  # the node the actor runs on
                lambda _: ray.get_runtime_context().get_node_id()
            )
            nodes[name] = str(ray.get(where, timeout=30))
        except (RayActorError, ValueError, ray.exceptions.GetTimeoutError):
            continue  # gone, or going, between the listing and the call
    return nodes


def settled(deployment: str, replicas: int) -> bool:
    """Ray says `replicas` run, and that many answer (Ray's count lags a replica killed)."""
    running = replica_states(deployment) == {"RUNNING": replicas}
    return running and len(replica_nodes(deployment)) == replicas


def replica_states(deployment: str) -> dict[str, int]:
    """Ray Serve's count of the deployment's replicas by state (RUNNING, STARTING ...)."""
    from ray import serve

    status = serve.status().applications["modelyard"].deployments[deployment]
    return {getattr(state, "value", state): n for state, n in status.replica_states.items()}


def wait_until(check: Any, timeout: float, step: float = 0.25) -> float:
    """Seconds until `check()` held; fails the test past `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {getattr(check, '__doc__', check)}")
        time.sleep(step)
    return time.monotonic() - started
