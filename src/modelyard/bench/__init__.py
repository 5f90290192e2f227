"""`modelyard bench`: a load generator for a running server (KServe v2 HTTP and gRPC, OpenAI).

    options.py  what a run is asked to do (steps, duration, inputs), checked before it starts
    inputs.py   request tensors: synthetic from the model's metadata, or a KServe v2 JSON file
    clients.py  one request over each protocol: KServe HTTP (http1.py), gRPC (grpc.aio and
                tritonclient's stubs), OpenAI streaming (httpx)
    http1.py    a small HTTP/1.1 client on asyncio streams, light enough not to be the limit
    load.py     closed-loop (concurrency) and open-loop (rate) steps, warm-up, progress
    scrape.py   the server's /metrics read during the run (batch sizes, queues over time)
    report.py   percentiles, the table, the JSON and CSV results, `--compare`
    plots.py    the PNGs (matplotlib, the `bench` extra)

docs/bench.md describes the command, its output and the result JSON's fields.
"""

from __future__ import annotations

from modelyard.bench.options import BenchError, Plan
from modelyard.bench.run import compare_runs, run_bench

__all__ = ["BenchError", "Plan", "compare_runs", "run_bench"]
