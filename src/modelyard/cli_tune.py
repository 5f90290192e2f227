"""`modelyard tune MODEL|REPO`: measure, pick, cache (modelyard/tuning)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli_error import CLIError
from modelyard.settings import parse_duration

if TYPE_CHECKING:  # the tuning modules import numpy and the runtimes: loaded when tune runs
    from modelyard.tuning.decode import DecodeResult
    from modelyard.tuning.search import TuneResult


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--goal",
    type=click.Choice(["latency", "throughput"]),
    default="latency",
    show_default=True,
    envvar="MODELYARD_GOAL",
    help="What to optimise: the median at one client (a text generator: the first token's p99 "
    "at --streams), or requests/s (tokens/s) at --concurrency clients (--streams) "
    "(a model's own `goal` parameter wins).",
)
@click.option(
    "--latency-ms",
    type=float,
    envvar="MODELYARD_LATENCY_MS",
    help="Pick the highest throughput whose p99 at --concurrency clients is within this.",
)
@click.option(
    "--budget",
    default="60s",
    show_default=True,
    envvar="MODELYARD_TUNE_BUDGET",
    help="Time for each model's search, e.g. 20s or 2m.",
)
@click.option(
    "--concurrency",
    default=64,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Clients of the throughput measurement.",
)
@click.option(
    "--streams",
    "llm_concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Concurrent streams of a text generator's measurement (its slots are searched).",
)
@click.option(
    "--in-process",
    "in_process",
    is_flag=True,
    help="Measure only in-process (no server through the HTTP front for the finalists).",
)
@click.option(
    "--tokens",
    default=32,
    show_default=True,
    type=click.IntRange(4, 4096),
    help="Tokens each stream writes when a text generator's decode speed is measured.",
)
@click.option("--trust-pickle", is_flag=True, envvar="MODELYARD_TRUST_PICKLE")
@click.option("--json", "as_json", is_flag=True, help="Print the picks as JSON.")
def tune(
    path: Path, budget: str, in_process: bool, as_json: bool, tokens: int, **options: Any
) -> None:
    """Search the settings that serve PATH best on this machine (a model file or folder, or a
    repository) and cache the pick: the next `modelyard serve` uses it without measuring.
    Text generators (GGUF, Hugging Face folders) are also measured as they are advised: decode
    tokens/s at 1 and 8 streams, which `modelyard advise` shows (GGUF and Transformers side by
    side for one model); a GGUF's sequence slots are then searched at --streams."""
    from modelyard.tuning.decode import decode_all
    from modelyard.tuning.llm import LLM_TUNABLE
    from modelyard.tuning.search import TuneOptions, tune_path

    try:
        seconds = parse_duration(budget)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from None
    if not seconds:
        raise click.BadParameter(
            "the budget must be a positive duration, e.g. 20s", param_hint="--budget"
        )
    settings = TuneOptions(budget_s=seconds, front=not in_process, **options)
    say = (lambda _: None) if as_json else click.echo
    decoded = decode_all(path, tokens, progress=say)
    # a GGUF's slots are searched as well; a Transformers generator's decode speed is all
    searched = frozenset(d.name for d in decoded if d.figures.runtime not in LLM_TUNABLE)
    results = tune_path(path, settings, progress=say, skip=searched)
    if not results and not decoded:
        raise CLIError(f"no model to tune in {path}")
    if as_json:
        _print_json(results, decoded)
        return
    _print_text(results, decoded)


def _print_json(results: list[TuneResult], decoded: list[DecodeResult]) -> None:
    import orjson

    out = [
        {
            "name": r.name,
            "cache": str(r.cache),
            "seconds": r.seconds,
            **r.pick.to_json(),
            **({"conversion": r.conversion.to_json()} if r.conversion else {}),
        }
        for r in results
    ]
    out += [
        {"name": d.name, "cache": str(d.cache), "seconds": d.seconds, **d.figures.to_json()}
        for d in decoded
    ]
    click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


def _print_text(results: list[TuneResult], decoded: list[DecodeResult]) -> None:
    from modelyard.tuning.search import as_config, show

    for done in decoded:
        click.echo(f"\n{done.name}: decode speed measured in {done.seconds:.1f} s")
        click.echo(f"  measured     {done.figures.describe()}")
        click.echo(f"  cached in    {done.cache} (`modelyard advise` shows it)")
    for result in results:
        pick = result.pick
        click.echo(f"\n{result.name}: {result.pick.steps} configurations in {result.seconds:.1f} s")
        click.echo(f"  rules' pick  {show(pick.default_settings)}")
        if pick.default_figures is not None:
            click.echo(f"               {pick.default_figures.describe()}")
        click.echo(f"  tuned pick   {show(pick.settings)}")
        click.echo(f"               {pick.figures.describe()}")
        click.echo(f"  cached in    {result.cache} (the next start applies it)")
        kind = "config.pbtxt" if result.layout == "triton" else "model.yaml"
        click.echo(f"  as config    (to pin it in the model's {kind})")
        for line in as_config(pick.settings, result.layout):
            click.echo(f"{'':15}{line}")
        if result.conversion is not None:
            click.echo(f"  converted    {result.conversion.describe()}")
        if pick.latency_ms:
            click.echo(
                f"  (measured under --latency-ms {pick.latency_ms:g}: a start applies it to a "
                f"model whose config sets the parameter latency_ms: {pick.latency_ms:g})"
            )
