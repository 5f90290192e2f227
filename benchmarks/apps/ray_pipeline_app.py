"""Ray Serve's model composition: preprocess -> MLP -> postprocess as three deployments, each
batching with `@serve.batch`, chained from an ingress through `DeploymentHandle`s (the handle
responses passed on unresolved, as Ray's docs recommend). One replica each; max_ongoing_requests
raised from its default of 5 (which would cap every batch at 5); Serve's access log off."""

from __future__ import annotations

import os
import time

import numpy as np
import onnxruntime as ort
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request

MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
WAIT_S = int(os.environ.get("BENCH_WAIT_US", "2000")) / 1e6
# a quarter of a CPU each: the four deployments' replicas must fit on 2 cores (one CPU each,
# Ray's default, would leave two of them unscheduled)
OPTIONS = {
    "max_ongoing_requests": 1024,
    "logging_config": {"enable_access_log": False},
    "ray_actor_options": {"num_cpus": 0.25},
}


@serve.deployment(**OPTIONS)
class Pre:
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def __call__(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        return list(np.stack(rows) * np.float32(2.0) - np.float32(1.0))


@serve.deployment(**OPTIONS)
class MLP:
    def __init__(self, model: str) -> None:
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def __call__(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, {"x": np.stack(rows)})[0])


@serve.deployment(**OPTIONS)
class Post:
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def __call__(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        y = np.stack(rows)
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return list(e / e.sum(axis=1, keepdims=True))


@serve.deployment(**OPTIONS)
class Pipeline:
    def __init__(self, pre: DeploymentHandle, mlp: DeploymentHandle, post: DeploymentHandle):
        self.pre, self.mlp, self.post = pre, mlp, post

    async def __call__(self, request: Request) -> dict[str, list[float]]:
        body = await request.json()
        x = np.asarray(body["x"], dtype=np.float32)
        probs = await self.post.remote(self.mlp.remote(self.pre.remote(x)))
        return {"probs": probs.tolist()}


def main() -> None:
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["BENCH_PORT"])})
    app = Pipeline.bind(Pre.bind(), MLP.bind(os.environ["BENCH_MODEL"]), Post.bind())
    serve.run(app, name="pipeline", route_prefix="/predict")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
