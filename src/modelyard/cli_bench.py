"""`modelyard bench`: load a running server's model and report what it does under it
(docs/bench.md). Thin: the options become a `Plan`; modelyard/bench runs it."""

from __future__ import annotations

from pathlib import Path

import click

from modelyard.client import server_address

_PROTOCOLS = ("kserve-http", "kserve-grpc", "openai")


@click.command()
@click.argument("model", required=False)
@click.option(
    "--url",
    envvar="MODELYARD_BENCH_URL",
    help="The server's HTTP address (default: MODELYARD_HOST, else http://127.0.0.1:8000).",
)
@click.option(
    "--grpc-url",
    default="",
    envvar="MODELYARD_BENCH_GRPC_URL",
    help="host:port of its gRPC front (default: --url's host, port 8001).",
)
@click.option(
    "--protocol",
    type=click.Choice(_PROTOCOLS),
    envvar="MODELYARD_BENCH_PROTOCOL",
    help="Default: openai (streamed) for a text generator, else kserve-http.",
)
@click.option(
    "--concurrency",
    envvar="MODELYARD_BENCH_CONCURRENCY",
    help="Closed loop: requests in flight, one step per value, e.g. 1,4,16,64 (default 1).",
)
@click.option(
    "--rate",
    envvar="MODELYARD_BENCH_RATE",
    help="Open loop: requests a second, one step per value, e.g. 100,500; latency counts "
    "from each request's scheduled time.",
)
@click.option(
    "--arrival",
    type=click.Choice(("poisson", "fixed")),
    default="poisson",
    show_default=True,
    envvar="MODELYARD_BENCH_ARRIVAL",
    help="Open loop: random (Poisson) or evenly spaced arrivals.",
)
@click.option(
    "--duration",
    type=float,
    default=10.0,
    show_default=True,
    envvar="MODELYARD_BENCH_DURATION",
    help="Seconds per step.",
)
@click.option(
    "--requests",
    type=int,
    default=0,
    envvar="MODELYARD_BENCH_REQUESTS",
    help="Requests per step, instead of --duration.",
)
@click.option(
    "--warmup",
    type=float,
    default=2.0,
    show_default=True,
    envvar="MODELYARD_BENCH_WARMUP",
    help="Seconds of unmeasured load at the first step's level before it.",
)
@click.option(
    "--batch",
    type=int,
    default=1,
    show_default=True,
    envvar="MODELYARD_BENCH_BATCH",
    help="Synthetic inputs: the leading -1 dimension (other -1 dimensions are 1).",
)
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MODELYARD_BENCH_INPUT",
    help="Send this KServe v2 JSON request instead of synthetic inputs.",
)
@click.option(
    "--prompt-tokens",
    type=int,
    default=64,
    show_default=True,
    envvar="MODELYARD_BENCH_PROMPT_TOKENS",
    help="Text generators: prompt length (about; the table's JSON has the real mean).",
)
@click.option(
    "--output-tokens",
    type=int,
    default=64,
    show_default=True,
    envvar="MODELYARD_BENCH_OUTPUT_TOKENS",
    help="Text generators: tokens generated per request (max_tokens, ignore_eos).",
)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    envvar="MODELYARD_BENCH_TIMEOUT",
    help="Seconds before a request counts as a timeout error.",
)
@click.option("--seed", type=int, default=0, envvar="MODELYARD_BENCH_SEED")
@click.option(
    "--api-key", default="", envvar="MODELYARD_API_KEY", help="For a server with API keys."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MODELYARD_BENCH_OUT",
    help="Write result.json, result.csv and the PNG plots into this folder.",
)
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Show two runs' result.json side by side (B/A ratios) and draw compare.png "
    "(into --out, else beside B); no MODEL then.",
)
def bench(
    model: str | None,
    url: str | None,
    grpc_url: str,
    protocol: str | None,
    concurrency: str | None,
    rate: str | None,
    arrival: str,
    duration: float,
    requests: int,
    warmup: float,
    batch: int,
    input_file: Path | None,
    prompt_tokens: int,
    output_tokens: int,
    timeout: float,
    seed: int,
    api_key: str,
    out: Path | None,
    compare: tuple[Path, Path] | None,
) -> None:
    """Load MODEL on a running server and report req/s, latency percentiles and errors per
    step (for text generators also TTFT, inter-token latency and tokens/s), with plots.
    `modelyard bench --compare A.json B.json` shows two runs side by side."""
    from modelyard.bench import Plan, compare_runs, run_bench
    from modelyard.bench.options import BenchError, steps_from

    if compare:
        if model:
            raise BenchError("give MODEL (a run) or --compare A.json B.json, not both")
        compare_runs(*compare, folder=out)
        return
    if not model:
        raise BenchError("which model? `modelyard bench MODEL` (or --compare A.json B.json)")
    if url is None:
        host, port = server_address()
        url = f"http://{host}:{port}"
    plan = Plan(
        model=model,
        url=url.rstrip("/"),
        grpc_url=grpc_url,
        protocol=protocol or "",
        steps=steps_from(concurrency, rate),
        arrival=arrival,
        duration_s=duration,
        requests=requests,
        warmup_s=warmup,
        batch=batch,
        input_file=input_file,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        timeout_s=timeout,
        seed=seed,
        api_key=api_key.split(",")[0].strip(),
    )
    run_bench(plan, out)
