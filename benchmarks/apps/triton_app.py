"""Triton (the `tritonserver` binary inside nvidia-pytriton) serving the MLP as a Python callable
behind Triton's C++ HTTP/gRPC fronts and its dynamic batcher. Runs under Python 3.12 with
LD_LIBRARY_PATH set to that Python's LIBDIR (the Python backend stub links libpython3.12)."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])


@batch
def infer(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": session.run(None, {"x": x})[0]}


def main() -> None:
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=int(os.environ["BENCH_PORT"]),
        grpc_address="127.0.0.1",
        grpc_port=int(os.environ["BENCH_GRPC_PORT"]),
        metrics_address="127.0.0.1",
        metrics_port=int(os.environ["BENCH_METRICS_PORT"]),
        log_verbose=0,
    )
    batcher = DynamicBatcher(max_queue_delay_microseconds=int(os.environ["BENCH_WAIT_US"]))
    # as plain tritonserver: no API behind pytriton's access token (perf_analyzer reads the
    # statistics API)
    security = TritonSecurityConfig(restricted_endpoints=[])
    workspace = os.environ["BENCH_SCRATCH"]
    with Triton(config=config, workspace=workspace, security_config=security) as triton:
        triton.bind(
            model_name="mlp",
            infer_func=infer,
            inputs=[Tensor(name="x", dtype=np.float32, shape=(256,))],
            outputs=[Tensor(name="y", dtype=np.float32, shape=(10,))],
            config=ModelConfig(max_batch_size=int(os.environ["BENCH_MAX_BATCH"]), batcher=batcher),
        )
        triton.serve()


if __name__ == "__main__":
    main()
