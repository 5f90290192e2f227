"""LitServe with its batching on: requests are decoded one by one, stacked, run, split back.
(No `from __future__ import annotations`: LitServe reads decode_request's annotation.)"""

import os
from typing import Any

import litserve as ls
import numpy as np
import onnxruntime as ort


class MLP(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.session = ort.InferenceSession(
            os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"]
        )

    def decode_request(self, request: dict[str, Any]) -> np.ndarray:
        return np.asarray(request["x"], dtype=np.float32)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": x})[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, list[float]]:
        return {"y": output.tolist()}


if __name__ == "__main__":
    api = MLP(
        max_batch_size=int(os.environ["BENCH_MAX_BATCH"]),
        batch_timeout=int(os.environ["BENCH_WAIT_US"]) / 1e6,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        log_level="warning",
        generate_client_file=False,
    )
