"""A whole run: read the model's metadata, pick the protocol, warm up, run each step while the
server's /metrics is read, print the table, write the files; and two runs compared."""

from __future__ import annotations

import asyncio
import datetime
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO

import httpx

from modelyard.bench import inputs, plots, report
from modelyard.bench.clients import (
    Client,
    KServeGRPC,
    KServeHTTP,
    OpenAIStream,
    headers,
    is_text_generator,
    model_metadata,
)
from modelyard.bench.load import run_step
from modelyard.bench.options import BenchError, Plan, check
from modelyard.bench.scrape import Scraper


def run_bench(plan: Plan, folder: Path | None = None, out: TextIO | None = None) -> dict[str, Any]:
    """Run `plan` against its server; print the table on `out` (stdout), write the JSON, CSV
    and PNGs into `folder` when given. Returns the result (the JSON's content)."""
    check(plan)
    out = out or sys.stdout
    if folder is not None and not plots.available():
        print(f"note: no plots without matplotlib ({plots.INSTALL})", file=sys.stderr)
    result = _loop_run(_run(plan, out))
    if folder is not None:
        _write(result, folder, out)
    return result


async def _run(plan: Plan, out: TextIO) -> dict[str, Any]:
    given = inputs.from_file(plan.input_file) if plan.input_file else None
    metadata = await model_metadata(plan)
    llm = is_text_generator(metadata)
    protocol = plan.protocol or ("openai" if llm else "kserve-http")
    if protocol == "openai" and not llm:
        raise BenchError(
            f"model {plan.model!r} is not a text generator: bench it with --protocol "
            "kserve-http or kserve-grpc"
        )
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    client = _client(plan, protocol, metadata, given)
    http = httpx.AsyncClient(base_url=plan.url, timeout=10, headers=headers(plan))
    scraper = Scraper(http, plan.model, llm)
    scraper.start()
    try:
        steps = await _steps(plan, client, scraper, llm and protocol == "openai", out)
    finally:
        await scraper.stop()
        await client.close()
        await http.aclose()
    return {
        "format": report.FORMAT,
        "model": plan.model,
        "url": plan.url if protocol != "kserve-grpc" else plan.grpc_target,
        "protocol": protocol,
        "llm": llm and protocol == "openai",
        "started": started,
        "settings": _settings(plan),
        "metadata": {k: metadata.get(k) for k in ("platform", "inputs", "outputs")},
        "steps": steps,
        "server": {"timeline": scraper.points, "error": scraper.failed},
    }


async def _steps(
    plan: Plan, client: Client, scraper: Scraper, llm: bool, out: TextIO
) -> list[dict[str, Any]]:
    poisson = plan.arrival == "poisson"
    if plan.warmup_s > 0:
        await run_step(client, plan.steps[0], plan.warmup_s, 0, poisson=poisson, label="warm-up")
    print(report.header(llm), file=out, flush=True)
    summaries = []
    for index, step in enumerate(plan.steps):
        scraper.step = step.label
        result = await run_step(
            client,
            step,
            plan.duration_s,
            plan.requests,
            poisson=poisson,
            seed=plan.seed + index,
        )
        summary = report.summarize(result, llm)
        print(report.row(summary, llm), file=out, flush=True)
        summaries.append(summary)
    scraper.step = "after"
    return summaries


def _client(
    plan: Plan,
    protocol: str,
    metadata: dict[str, Any],
    given: tuple[list[inputs.Request], bytes] | None,
) -> Client:
    connections = max(int(s.load) if s.mode == "concurrency" else 256 for s in plan.steps)
    if protocol == "openai":
        return OpenAIStream(plan, connections)
    requests, body = given or (
        inputs.synthetic(metadata, plan.batch, plan.seed, plan.output_tokens),
        b"",
    )
    if protocol == "kserve-grpc":
        return KServeGRPC(plan, requests)
    return KServeHTTP(plan, requests, connections, body)


def _loop_run(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """On uvloop where it is installed (uvicorn's `standard` extra): less of the client's CPU
    per request, on the cores the server may share."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with modelyard's dependencies
        return asyncio.run(work)
    return uvloop.run(work)


def _settings(plan: Plan) -> dict[str, Any]:
    return {
        "duration_s": plan.duration_s,
        "requests": plan.requests,
        "warmup_s": plan.warmup_s,
        "arrival": plan.arrival,
        "batch": plan.batch,
        "input": str(plan.input_file) if plan.input_file else None,
        "prompt_tokens": plan.prompt_tokens,
        "output_tokens": plan.output_tokens,
        "timeout_s": plan.timeout_s,
        "seed": plan.seed,
    }


def _write(result: dict[str, Any], folder: Path, out: TextIO) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    report.write_json(result, folder / "result.json")
    report.write_csv(result, folder / "result.csv")
    written = [folder / "result.json", folder / "result.csv"]
    if plots.available():
        written += plots.draw_run(result, folder)
    print(f"\nwrote {', '.join(str(p) for p in written)}", file=out)


def compare_runs(
    a: Path, b: Path, folder: Path | None = None, out: TextIO | None = None
) -> Path | None:
    """Print runs A and B side by side; draw compare.png into `folder` (default: B's folder)."""
    out = out or sys.stdout
    run_a, run_b = report.load(a), report.load(b)
    print(report.compare_table(run_a, run_b), file=out)
    if not plots.available():
        print(f"note: no plot without matplotlib ({plots.INSTALL})", file=sys.stderr)
        return None
    target = (folder or b.parent) / "compare.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    plots.draw_compare(run_a, run_b, target)
    print(f"\nwrote {target}", file=out)
    return target
