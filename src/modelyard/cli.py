"""The `modelyard` command: thin — parse, build settings, call the library.
Every option also reads a MODELYARD_* environment variable."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from modelyard import __version__
from modelyard.cli_bench import bench
from modelyard.cli_client import register as register_client_commands
from modelyard.cli_error import CLIError, Commands
from modelyard.cli_tune import tune
from modelyard.errors import ModelyardError
from modelyard.settings import (
    CONTROL_MODES,
    Limits,
    Settings,
    parse_duration,
    read_api_keys,
    split_host,
)

_START = time.perf_counter()


@click.group(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """modelyard: one inference server for every kind of model."""


@main.command()
@click.argument(
    "repositories", nargs=-1, type=click.Path(path_type=Path), envvar="MODELYARD_REPOSITORY"
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="MODELYARD_HOST",
    help="Address to bind (127.0.0.1 keeps the server private).",
)
@click.option("--http-port", default=8000, show_default=True, envvar="MODELYARD_HTTP_PORT")
@click.option(
    "--grpc-port",
    default=8001,
    show_default=True,
    envvar="MODELYARD_GRPC_PORT",
    help="KServe v2 gRPC port.",
)
@click.option(
    "--ollama-port",
    default=0,
    envvar="MODELYARD_OLLAMA_PORT",
    help="Also serve every HTTP route on this port, e.g. 11434 (Ollama's), so clients "
    "with default settings connect (0: no second port).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    envvar="MODELYARD_RAY",
    help="Serve on Ray Serve: each model a deployment on the Ray cluster at this address "
    "(bare --ray: a Ray of this machine's own), the fronts on --host/--port and KServe v2 "
    "gRPC on --grpc-port (docs/ray.md; extra [ray]).",
)
@click.option(
    "--torchserve-port",
    default=0,
    envvar="MODELYARD_TORCHSERVE_PORT",
    help="Serve TorchServe's inference API (/predictions, /ping) on this port, e.g. 8080 "
    "(0: not served).",
)
@click.option(
    "--torchserve-management-port",
    default=0,
    envvar="MODELYARD_TORCHSERVE_MANAGEMENT_PORT",
    help="Serve TorchServe's management API (/models) on this port, e.g. 8081 (0: not served).",
)
@click.option(
    "--model-control-mode",
    type=click.Choice(CONTROL_MODES),
    default=None,
    envvar="MODELYARD_MODEL_CONTROL_MODE",
    help="Default: load every model at start and on demand; the API may load, unload, pull, "
    "copy and delete. none: load all, the repository is locked (production); explicit: load "
    "--load-model ones, the API loads and unloads; poll: load all and follow the disk; "
    "ondemand: load at first request.",
)
@click.option(
    "--load-model",
    "load_models",
    multiple=True,
    envvar="MODELYARD_LOAD_MODEL",
    help="Model to load at start in explicit or ondemand mode ('*' for all). Repeatable.",
)
@click.option(
    "--poll-interval",
    default=5.0,
    show_default=True,
    envvar="MODELYARD_POLL_INTERVAL",
    help="Seconds between repository scans in poll mode.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    envvar="MODELYARD_TRUST_PICKLE",
    help="Allow pickle-based model files (.joblib, .pkl): they run code when loaded.",
)
@click.option(
    "--goal",
    type=click.Choice(["latency", "throughput"]),
    default="latency",
    show_default=True,
    envvar="MODELYARD_GOAL",
    help="What the advisor configures models for where their config is silent (a model's "
    "own `goal` parameter wins).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    envvar="MODELYARD_API_KEY",
    help="Require 'Authorization: Bearer KEY'. Repeatable; comma-separated in the env.",
)
@click.option(
    "--pull-from",
    "pull_from",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="MODELYARD_PULL_FROM",
    help="A folder whose models /api/pull and `modelyard pull` may copy in by path "
    "(repeatable; none by default: paths are refused).",
)
@click.option(
    "--pull-code",
    is_flag=True,
    envvar="MODELYARD_PULL_CODE",
    help="Let pulled models run code when they load (Python models, pickles).",
)
@click.option(
    "--tgi-model",
    default="",
    envvar="MODELYARD_TGI_MODEL",
    help="The model TGI's routes (/generate, /generate_stream, POST /, /info, /tokenize) serve "
    "when a request names none, and that the model names TGI clients send ('tgi', 'dummy') "
    "mean on /v1 (default: the one loaded text generator).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    envvar="MODELYARD_ORIGINS",
    help="Also allow browser pages from this origin (Ollama's OLLAMA_ORIGINS; '*' is a "
    "wildcard). localhost, 127.0.0.1 and app://, file://, tauri://, vscode-webview:// pages "
    "are allowed by default. Repeatable; comma-separated in the env.",
)
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="MODELYARD_API_KEY_FILE",
    help="File with one API key per line.",
)
@click.option(
    "--max-request-bytes",
    default=64 * 1024 * 1024,
    show_default=True,
    envvar="MODELYARD_MAX_REQUEST_BYTES",
    help="Largest request body accepted.",
)
@click.option(
    "--grpc-max-message-bytes",
    default=64 * 1024 * 1024,
    show_default=True,
    envvar="MODELYARD_GRPC_MAX_MESSAGE_BYTES",
    help="Largest gRPC message received or sent.",
)
@click.option(
    "--keep-alive",
    default=None,
    envvar="MODELYARD_KEEP_ALIVE",
    help="How long idle models stay loaded (5m, 1h, 0, -1 forever). "
    "Default: forever; 5m in ondemand mode.",
)
@click.option(
    "--max-loaded-models",
    default=0,
    envvar="MODELYARD_MAX_LOADED_MODELS",
    help="Most models loaded at once; least recently used idle ones unload (0: no limit).",
)
@click.option(
    "--memory-budget",
    default=None,
    envvar="MODELYARD_MEMORY_BUDGET",
    help="Memory the loaded models may take by their estimates, e.g. 8GiB.",
)
@click.option(
    "--workers",
    default=0,
    envvar="MODELYARD_WORKERS",
    help="Threads that run models (0: a few per core).",
)
@click.option(
    "--max-header-bytes",
    default=Limits.max_header_bytes,
    type=click.IntRange(min=1),
    show_default=True,
    envvar="MODELYARD_MAX_HEADER_BYTES",
    help="Largest request line and header fields of a request (431 past it; on gRPC, the "
    "header list size: the stream is reset).",
)
@click.option(
    "--max-headers",
    default=Limits.max_headers,
    type=click.IntRange(min=1),
    show_default=True,
    envvar="MODELYARD_MAX_HEADERS",
    help="Most header fields in a request (431 past it).",
)
@click.option(
    "--header-timeout",
    default=Limits.header_timeout_s,
    type=click.FloatRange(min=0.1),
    show_default=True,
    envvar="MODELYARD_HEADER_TIMEOUT",
    help="Seconds a client may take to send a request's headers (408 and close past it; "
    "gRPC: the preface and each header block).",
)
@click.option(
    "--body-timeout",
    default=Limits.body_timeout_s,
    type=click.FloatRange(min=0.1),
    show_default=True,
    envvar="MODELYARD_BODY_TIMEOUT",
    help="Seconds a client may take to send a request's body once its headers are in.",
)
@click.option(
    "--idle-timeout",
    default=Limits.idle_timeout_s,
    type=click.FloatRange(min=0.1),
    show_default=True,
    envvar="MODELYARD_IDLE_TIMEOUT",
    help="Seconds an HTTP connection may sit idle (before and between requests).",
)
@click.option(
    "--grpc-idle-timeout",
    default=Limits.grpc_idle_timeout_s,
    type=click.FloatRange(min=0.1),
    show_default=True,
    envvar="MODELYARD_GRPC_IDLE_TIMEOUT",
    help="Seconds a gRPC connection may go without a call before GOAWAY.",
)
@click.option(
    "--max-connections",
    default=0,
    type=click.IntRange(min=0),
    envvar="MODELYARD_MAX_CONNECTIONS",
    help="Most client connections open at once, HTTP and gRPC together (past it: 503 and "
    "close; gRPC: GOAWAY). 0: the open-files limit (raised to its hard limit) less 256.",
)
@click.option(
    "--max-body-memory",
    default="256MiB",
    show_default=True,
    envvar="MODELYARD_MAX_BODY_MEMORY",
    help="Request bodies all requests in flight may hold together, HTTP and unary gRPC (429 "
    "past it); at least --max-request-bytes and --grpc-max-message-bytes.",
)
@click.option(
    "--shutdown-timeout",
    default=30.0,
    type=click.FloatRange(min=0),
    show_default=True,
    envvar="MODELYARD_SHUTDOWN_TIMEOUT",
    help="Seconds to finish requests after SIGTERM; streams still open near the end get a "
    "final error event, and the process exits when they are spent.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    envvar="MODELYARD_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(repositories: tuple[Path, ...], **options: Any) -> None:
    """Serve the models in REPOSITORIES (the built-in demo models when none is given)."""
    _setup_logging(options["log_level"])
    demo = not repositories
    if demo:
        repositories = (_demo_repository(),)
    ray_address = options.pop("ray_address")
    settings = _settings(repositories, options)
    _check_repositories(settings)
    if ray_address:
        _serve_on_ray(settings, ray_address)
        return
    from modelyard.serving import run

    run(settings, demo=demo, started=_START)


def _serve_on_ray(settings: Settings, address: str) -> None:
    try:
        from modelyard.ray.run import run
    except ImportError as exc:
        raise CLIError(f"--ray needs Ray Serve: pip install 'modelyard[ray]' ({exc})") from None
    run(settings, address)


def _settings(repositories: tuple[Path, ...], options: dict[str, Any]) -> Settings:
    try:
        keep_alive = parse_duration(options.pop("keep_alive"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keep-alive") from None
    budget = options.pop("memory_budget")
    try:  # MODELYARD_HOST may be host:port, as OLLAMA_HOST is (the client commands read it so)
        options["host"], options["http_port"] = split_host(options["host"], options["http_port"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--host") from None
    given, key_file = options.pop("api_keys"), options.pop("api_key_file")
    keys = read_api_keys(given, key_file)
    if (given or key_file) and not keys:  # never start open when keys were asked for
        raise click.BadParameter("no API key in what was given", param_hint="--api-key")
    if options["model_control_mode"] is None:  # a server started by hand: open, all loaded
        options["model_control_mode"] = "ondemand"
        options["load_models"] = options["load_models"] or ("*",)
    origins = tuple(o.strip() for v in options.pop("cors_origins") for o in v.split(","))
    options["limits"] = _limits(options)
    options["shutdown_timeout_s"] = options.pop("shutdown_timeout")
    return Settings(
        repositories=tuple(repositories),
        api_keys=keys,
        cors_origins=tuple(o for o in origins if o),
        keep_alive_s=keep_alive,
        memory_budget_bytes=_size(budget) if budget else 0,
        poll_interval_s=options.pop("poll_interval"),
        **options,
    )


def _size(text: str, option: str = "--memory-budget") -> int:
    from modelyard.advisor.memory import parse_size

    try:
        return parse_size(text)
    except ModelyardError as exc:
        raise click.BadParameter(exc.message, param_hint=option) from None


def _limits(options: dict[str, Any]) -> Limits:
    body_memory = _size(options.pop("max_body_memory"), "--max-body-memory")
    largest = max(options["max_request_bytes"], options["grpc_max_message_bytes"])
    if body_memory < largest:
        raise click.BadParameter(
            f"{body_memory} bytes is less than --max-request-bytes or "
            f"--grpc-max-message-bytes ({largest}): a request of the largest size could never "
            "be taken",
            param_hint="--max-body-memory",
        )
    return Limits(
        max_header_bytes=options.pop("max_header_bytes"),
        max_headers=options.pop("max_headers"),
        header_timeout_s=options.pop("header_timeout"),
        body_timeout_s=options.pop("body_timeout"),
        idle_timeout_s=options.pop("idle_timeout"),
        grpc_idle_timeout_s=options.pop("grpc_idle_timeout"),
        max_connections=options.pop("max_connections"),
        max_body_memory_bytes=body_memory,
    )


@main.command(name="list")
@click.argument("repositories", nargs=-1, type=click.Path(path_type=Path))
@click.option("--trust-pickle", is_flag=True, envvar="MODELYARD_TRUST_PICKLE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_models(repositories: tuple[Path, ...], trust_pickle: bool, as_json: bool) -> None:
    """What REPOSITORIES would serve: names, versions, runtime, inputs and outputs. With no
    folder: the models of the server at MODELYARD_HOST if one answers, else the demo ones."""
    from modelyard.cli_client import server_list
    from modelyard.listing import describe_repository, render_table

    if not repositories and server_list(as_json):
        return
    roots = repositories or (_demo_repository(),)
    settings = Settings(repositories=tuple(roots), trust_pickle=trust_pickle)
    _check_repositories(settings)
    rows = describe_repository(settings)
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_table(rows))


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--goal",
    type=click.Choice(["latency", "throughput"]),
    default="latency",
    show_default=True,
    envvar="MODELYARD_GOAL",
    help="What to optimise for.",
)
@click.option(
    "--latency-ms",
    type=float,
    envvar="MODELYARD_LATENCY_MS",
    help="Latency target: bounds batching waits; for LLMs, per generated token.",
)
@click.option(
    "--memory",
    envvar="MODELYARD_MEMORY",
    help="Memory budget, e.g. 8GiB or 512MB (default: the memory free now).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (schema: modelyard/advisor/schema.json)."
)
def advise(
    path: Path | None, goal: str, latency_ms: float | None, memory: str | None, as_json: bool
) -> None:
    """Which runtime and settings would serve PATH best here, and why (a model file or
    folder, or a repository; the demo models when none is given)."""
    from modelyard.advisor.hardware import probe
    from modelyard.advisor.memory import parse_size
    from modelyard.advisor.render import render, to_json
    from modelyard.repository.advice import advise_path

    hardware = probe()
    budget = parse_size(memory) if memory else None
    advice, pipelines = advise_path(
        path or _demo_repository(), hardware, goal=goal, latency_ms=latency_ms, memory=budget
    )
    if as_json:
        import orjson

        document = to_json(hardware, advice, pipelines)
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(hardware, advice, pipelines))


register_client_commands(main)
main.add_command(tune)
main.add_command(bench)


def _demo_repository() -> Path:
    from modelyard.demo import demo_repository

    try:
        return demo_repository()
    except ImportError as exc:
        raise CLIError(f"the demo models need {exc.name}: pip install 'modelyard[all]'") from exc


def _check_repositories(settings: Settings) -> None:
    for root in settings.repositories:
        if not root.is_dir():
            raise CLIError(f"model repository {root} is not a folder")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
