"""A light closed-loop KServe v2 gRPC load client (asyncio, raw grpc.aio stubs from tritonclient).

    python benchmarks/grpc_load.py --port P --concurrency C --warmup S --duration S --row FILE

`--row` is 256 float32s, raw. C coroutines on one channel each send one request at a time, as
wrk's connections do; prints one JSON line like the wrk script's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import grpc
import numpy as np
import uvloop
from tritonclient.grpc import service_pb2, service_pb2_grpc


def request(row: bytes) -> service_pb2.ModelInferRequest:
    tensor = service_pb2.ModelInferRequest().InferInputTensor(
        name="x", datatype="FP32", shape=[1, len(row) // 4]
    )
    return service_pb2.ModelInferRequest(
        model_name="mlp", inputs=[tensor], raw_input_contents=[row]
    )


async def worker(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    message: service_pb2.ModelInferRequest,
    until: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    while (start := time.perf_counter()) < until:
        try:
            await stub.ModelInfer(message, timeout=10)
        except grpc.aio.AioRpcError as exc:
            errors.append(exc.code().name)
            continue
        latencies.append(time.perf_counter() - start)


async def phase(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    message: service_pb2.ModelInferRequest,
    concurrency: int,
    seconds: float,
) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(
        *(worker(stub, message, until, latencies, errors) for _ in range(concurrency))
    )
    return latencies, errors, time.perf_counter() - start


async def run(args: argparse.Namespace) -> dict[str, float]:
    message = request(Path(args.row).read_bytes())
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{args.port}", options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        await phase(stub, message, args.concurrency, args.warmup)
        latencies, errors, elapsed = await phase(stub, message, args.concurrency, args.duration)
    ms = np.asarray(latencies) * 1e3
    p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"), float("nan"))
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "errors": len(errors),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--row", required=True)
    print(json.dumps(uvloop.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
