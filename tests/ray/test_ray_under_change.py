"""modelyard on the three-node Ray cluster (conftest.py) while things change under load: a
model's new version rolled out, load rising and falling (autoscaling both ways), a worker node
leaving. Each keeps clients sending requests through the ingress's own port the whole time and
asserts that none failed; each prints what it measured (`pytest -s`).

Runs after test_ray_serve.py (file order): the last test takes a node away."""

from __future__ import annotations

import itertools
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import pytest

from modelyard.ray.scaling import QUEUE_METRIC
from tests.models import addsub_onnx
from tests.ray.conftest import (
    SLOW_SCALING,
    RayApp,
    replica_nodes,
    replica_states,
    settled,
    wait_until,
)

pytest.importorskip("ray.serve")

from ray import serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MLP_BODY = {
    "inputs": [
        {"name": "x", "shape": [1, 32], "datatype": "FP32", "data": [i / 100 for i in range(32)]}
    ]
}
ADDSUB_BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "INPUT1", "shape": [1, 4], "datatype": "INT32", "data": [1, 1, 1, 1]},
    ]
}
SLOW_BODY = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}]}


class Load:
    """`clients` threads, each sending the next request when the last is answered, until the
    block ends: what came back (when, how long it took, the outputs) and what failed."""

    def __init__(self, address: str, model: str, body: dict[str, Any], clients: int) -> None:
        self.url = f"http://{address}/v2/models/{model}/infer"
        self.body = body
        self.answers: list[tuple[float, float, dict[str, Any]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.post(self.url, json=self.body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text}")
                    continue
                outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
                done = time.monotonic()
                self.answers.append((done, done - started, outputs))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        wait_until(lambda: len(self.answers) >= 10, 60)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=150)

    def longest_gap(self, since: float) -> float:
        """The longest time after `since` in which no answer came back."""
        times = [since, *sorted(t for t, _, _ in self.answers if t > since)]
        return max(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else 0


def test_a_new_version_rolls_out_with_no_failed_request(ray_app: RayApp) -> None:
    """The user's path: a version folder added to the repository, then the same `serve run`
    (here `serve.run(build_app(args))`) again. Ray rolls addsub onto version 2 (its one
    replica stopped, requests held in Ray's router until the new one runs), leaves the other
    models and the ingress running, and no request fails; the answers switch from version 1's
    (x1) to version 2's (x10)."""
    from modelyard.ray import build_app

    wait_until(lambda: settled("model-mlp", 2), 60)  # after test_ray_serve.py's kill
    untouched = {d: set(replica_nodes(d)) for d in ("model-mlp", "model-iris", "ingress")}
    with Load(ray_app.own, "addsub", ADDSUB_BODY, 4) as load:
        addsub_onnx(ray_app.repository / "addsub" / "2" / "model.onnx", scale=10.0)
        started = time.monotonic()
        serve.run(build_app(ray_app.args), name="modelyard", route_prefix="/")
        rolled = time.monotonic()
        time.sleep(2)  # routers hear of the stopped replica; then only version 2 answers
        switched = time.monotonic()
        wait_until(lambda: sum(t > switched + 1 for t, _, _ in load.answers) >= 10, 30)
    assert load.failures == []
    first = [(t, out["OUTPUT0"][0] / 2) for t, _, out in load.answers]  # (1 + 1) * scale
    assert {scale for t, scale in first if t < started} == {1.0}
    assert {scale for t, scale in first if t > switched} == {10.0}
    assert {d: set(replica_nodes(d)) for d in untouched} == untouched  # not restarted
    slowest = max(latency for t, latency, _ in load.answers if t > started)
    print(
        f"\nrolling update: serve.run returned after {rolled - started:.1f} s; "
        f"{len(load.answers)} answers, 0 failed; slowest during the update {slowest:.2f} s; "
        f"longest gap {load.longest_gap(started):.2f} s"
    )


def test_load_scales_a_model_out_and_idleness_back_in(ray_app: RayApp) -> None:
    """`slow` (0.1 s per request, one at a time; autoscaling 1-3 replicas at 4 requests each,
    upscale delay 1 s, downscale delay 4 s): 32 clients make Ray add replicas soon after the
    delay; when they stop, it goes back to one. The signal is modelyard's queue depth, which
    the replicas report."""
    wait_until(lambda: replica_states("model-slow") == {"RUNNING": 1}, 60)
    handle = serve.get_deployment_handle("model-slow", app_name="modelyard")
    up, down = SLOW_SCALING["upscale_delay_s"], SLOW_SCALING["downscale_delay_s"]
    with Load(ray_app.own, "slow", SLOW_BODY, 32) as load:
        started = time.monotonic()  # and 10 requests answered: the queue has built up
        depth = handle.record_autoscaling_stats.remote().result(timeout_s=30)[QUEUE_METRIC]
        decided = wait_until(lambda: sum(replica_states("model-slow").values()) > 1, up + 15)
        running = wait_until(lambda: replica_states("model-slow").get("RUNNING", 0) > 1, 120)
        time.sleep(2)
        peak = replica_states("model-slow").get("RUNNING", 0)
    idle = time.monotonic()
    back = wait_until(lambda: replica_states("model-slow") == {"RUNNING": 1}, down + 30)
    assert load.failures == []
    # what the one replica reported: the requests inside its model (at most 8 calls at once for
    # an unbatched model; the rest wait in the ingress's handle, which Ray counts as queued)
    assert depth >= 1
    rate = len(load.answers) / (idle - started)
    print(
        f"\nautoscaling: a new replica decided {decided:.1f} s into the load (upscale delay "
        f"{up} s), running at {decided + running:.1f} s ({peak} running); the one replica "
        f"reported {depth:.0f} requests inside; {rate:.0f} req/s; back to 1 {back:.1f} s after "
        f"the load stopped (downscale delay {down} s)"
    )


def test_a_node_that_leaves_is_replaced_and_requests_keep_being_answered(
    ray_app: RayApp,
) -> None:
    """A worker node holding one of mlp's replicas leaves (its raylet and workers stopped)
    under light load: every request is answered (those the lost replica held run again on the
    other), and Ray starts the lost replica again on a node still there."""
    cluster = ray_app.cluster
    wait_until(lambda: settled("model-mlp", 2), 60)
    victim = next(
        n for n in cluster.worker_nodes if n.node_id in replica_nodes("model-mlp").values()
    )
    alive = {n.node_id for n in cluster.list_all_nodes() if n is not victim}

    def replaced() -> bool:
        """mlp has two running replicas again, both on nodes still in the cluster"""
        return settled("model-mlp", 2) and set(replica_nodes("model-mlp").values()) <= alive

    with Load(ray_app.own, "mlp", MLP_BODY, 4) as load:
        started = time.monotonic()
        cluster.remove_node(victim)
        removed = time.monotonic() - started
        again = wait_until(replaced, 120, step=0.5)
        time.sleep(1)
    assert load.failures == []
    assert load.longest_gap(started) < 30  # held requests wait for Ray to declare the node dead
    slowest = max(latency for t, latency, _ in load.answers if t > started)
    print(
        f"\nnode left: remove_node took {removed:.1f} s; mlp's replica running again on a live "
        f"node {again:.1f} s after; {len(load.answers)} answers, 0 failed; slowest request "
        f"{slowest:.2f} s, longest gap {load.longest_gap(started):.2f} s"
    )
