"""A light closed-loop KServe v2 gRPC load client: `modelyard bench`'s own closed loop and gRPC
client (modelyard/bench: asyncio, raw grpc.aio stubs from tritonclient), on uvloop.

    python benchmarks/grpc_load.py --port P --concurrency C --warmup S --duration S --row FILE

`--row` is 256 float32s, raw. C coroutines on one channel each send one request at a time, as
wrk's connections do; prints one JSON line like the wrk script's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import uvloop

from modelyard.bench.clients import KServeGRPC
from modelyard.bench.inputs import Tensor
from modelyard.bench.load import run_step
from modelyard.bench.options import Plan, Step


async def run(args: argparse.Namespace) -> dict[str, float]:
    row = np.frombuffer(Path(args.row).read_bytes(), dtype="<f4").reshape(1, -1)
    plan = Plan("mlp", grpc_url=f"127.0.0.1:{args.port}", timeout_s=10)
    client = KServeGRPC(plan, [[Tensor("x", "FP32", row)]])
    step = Step("concurrency", args.concurrency)
    try:
        await run_step(client, step, args.warmup, 0)
        result = await run_step(client, step, args.duration, 0)
    finally:
        await client.close()
    ms = np.asarray([s.latency for s in result.samples if not s.error]) * 1e3
    p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"), float("nan"))
    return {
        "requests": len(ms),
        "seconds": result.seconds,
        "errors": sum(1 for s in result.samples if s.error),
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
