"""Ray Serve: one replica with `@serve.batch`; max_ongoing_requests raised from its default of 5
(which would cap every batch at 5); Serve's access log off."""

from __future__ import annotations

import os
import time

import numpy as np
import onnxruntime as ort
import ray
from ray import serve
from starlette.requests import Request

MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
WAIT_S = int(os.environ.get("BENCH_WAIT_US", "2000")) / 1e6


@serve.deployment(max_ongoing_requests=1024, logging_config={"enable_access_log": False})
class MLP:
    def __init__(self, model: str) -> None:
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def run(self, rows: list[np.ndarray]) -> list[list[float]]:
        y = self.session.run(None, {"x": np.stack(rows)})[0]
        return [row.tolist() for row in y]

    async def __call__(self, request: Request) -> dict[str, list[float]]:
        body = await request.json()
        return {"y": await self.run(np.asarray(body["x"], dtype=np.float32))}


def main() -> None:
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["BENCH_PORT"])})
    serve.run(MLP.bind(os.environ["BENCH_MODEL"]), name="mlp", route_prefix="/predict")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
