"""A BentoML service with adaptive batching (BentoML has no max-wait knob: `max_latency_ms` is
the budget past which it answers 503, so it is set high)."""

from __future__ import annotations

import os

import bentoml
import numpy as np
import onnxruntime as ort

MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class MLP:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(
            os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"]
        )

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=60_000)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": x.astype(np.float32)})[0]
