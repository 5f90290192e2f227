"""The commands that talk to a running server through its Ollama API, as Ollama's own do:
run, ps, show, stop, pull, rm, cp — and `list` when it is given no folder and a server
answers. The server is at MODELYARD_HOST (host[:port], default 127.0.0.1:8000); `run` starts
one (modelyard/embedded.py) when none answers."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from modelyard.cli_progress import PullProgress, Spinner, human
from modelyard.client import Client, ClientError, server_address


def register(group: click.Group) -> None:
    for command in (run, ps, show, stop, pull, rm, cp):
        group.add_command(command)


@contextmanager
def _client(timeout: float | None = None) -> Iterator[Client]:
    client = Client(timeout=timeout)
    try:
        yield client
    finally:
        client.close()


# ---- run ------------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--raw", is_flag=True, help="Complete the prompt as written (no chat template).")
@click.option("--system", default="", help="A system message for the chat.")
@click.option("--format", "format_", help='"json", or a JSON schema the reply must match.')
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A model option (Ollama's names: temperature=0, num_predict=64). Repeatable.",
)
@click.option("--keep-alive", help="How long the model stays loaded when idle (5m, 0, -1).")
@click.option("--verbose", is_flag=True, help="Show timings and token rates after each reply.")
def run(
    model: str,
    prompt: tuple[str, ...],
    raw: bool,
    system: str,
    format_: str | None,
    options: tuple[str, ...],
    keep_alive: str | None,
    verbose: bool,
) -> None:
    """Chat with MODEL: answer PROMPT (or the text piped in) once, or chat interactively.
    Starts a server for the session when none answers at MODELYARD_HOST."""
    from modelyard.cli_chat import Session, interact

    text = _prompt_text(prompt)
    session_options = dict(format=_format(format_), options=_options(options))
    try:
        with _client() as client, _server_for(client):
            _load(client, model, keep_alive)
            session = Session(
                client,
                model,
                raw=raw,
                system=system,
                keep_alive=keep_alive,
                verbose=verbose,
                **session_options,
            )
            if text:
                session.ask(text)
            else:
                interact(session)
    except KeyboardInterrupt:
        sys.exit(130)


def _prompt_text(prompt: tuple[str, ...]) -> str:
    text = " ".join(prompt)
    if not sys.stdin.isatty():
        piped = sys.stdin.read().strip()
        text = f"{text}\n\n{piped}" if text and piped else text or piped
    return text


@contextmanager
def _server_for(client: Client) -> Iterator[None]:
    """Nothing when a server answers; else a server of our own for the block."""
    if client.alive():
        yield
        return
    from modelyard.embedded import EmbeddedServer

    server = EmbeddedServer(*server_address())
    try:
        with Spinner("starting modelyard"):
            server.start(client)
        yield
    finally:
        server.stop()


def _load(client: Client, model: str, keep_alive: str | None) -> None:
    """Load the model (an empty prompt does), pulling it first if it is not there but a
    source has it (an installed model package), as `ollama run` does."""
    body = {"model": model, "keep_alive": keep_alive} if keep_alive else {"model": model}
    try:
        with Spinner(f"loading {model}"):
            client.post("/api/generate", body)
    except ClientError as exc:
        if exc.status != 404:
            raise
        try:
            _pull(client, model, None)
        except ClientError:
            raise exc from None
        with Spinner(f"loading {model}"):
            client.post("/api/generate", body)


def _format(value: str | None) -> Any:
    if not value or value == "json":
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise click.BadParameter('must be "json" or a JSON schema', param_hint="--format") from None


def _options(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            out[key.strip()] = orjson.loads(value)
        except orjson.JSONDecodeError:
            out[key.strip()] = value
    return out


# ---- the model commands ---------------------------------------------------------------------


@click.command()
def ps() -> None:
    """The models loaded now, what they take and when they unload."""
    with _client(timeout=30) as client:
        rows = client.get("/api/ps").get("models", [])
    table = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]]
    table += [
        [
            m["name"],
            m.get("digest", "")[:12],
            human(m.get("size", 0)),
            "100% CPU",
            str(m.get("context_length", "")),
            _until(m.get("expires_at", "")),
        ]
        for m in rows
    ]
    click.echo(_columns(table))


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.option("--template", is_flag=True, help="Print only the chat template.")
@click.option("--modelfile", is_flag=True, help="Print only the Modelfile equivalent.")
def show(model: str, as_json: bool, template: bool, modelfile: bool) -> None:
    """What MODEL is: architecture, size, context, capabilities, parameters."""
    with _client(timeout=60) as client:
        info = client.post("/api/show", {"model": model})
    if as_json:
        click.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
    elif template or modelfile:
        click.echo(info.get("template" if template else "modelfile", ""))
    else:
        click.echo(_describe(info))


@click.command()
@click.argument("model")
def stop(model: str) -> None:
    """Unload MODEL now."""
    with _client(timeout=60) as client:
        client.post("/api/generate", {"model": model, "keep_alive": 0})


@click.command()
@click.argument("source")
@click.option("--name", help="The name to give the model (default: the source's).")
def pull(source: str, name: str | None) -> None:
    """Put a model into the server's repository: a model file or folder on this machine, or
    an installed model package's model (e.g. gemma3:270m)."""
    with _client() as client:
        _pull(client, source, name)


def _pull(client: Client, source: str, name: str | None) -> None:
    path = Path(source).expanduser()
    if path.exists():  # a local path: the server (same machine) needs it absolute
        source = str(path.resolve())
    body: dict[str, Any] = {"model": source, "stream": True}
    if name:
        body["destination"] = name
    progress = PullProgress()
    try:
        for step in client.stream("/api/pull", body):
            progress.show(step)
    finally:
        progress.done()


@click.command()
@click.argument("models", nargs=-1, required=True)
def rm(models: tuple[str, ...]) -> None:
    """Delete MODELS from the server's repository (their files too)."""
    with _client(timeout=60) as client:
        for model in models:
            client.delete("/api/delete", {"model": model})
            click.echo(f"deleted '{model}'")


@click.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy SOURCE to a new model DESTINATION (sharing its files)."""
    with _client(timeout=60) as client:
        client.post("/api/copy", {"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


def server_list(as_json: bool) -> bool:
    """`modelyard list` with no folder: the server's models, if a server answers (True)."""
    with _client(timeout=30) as client:
        if not client.alive():
            return False
        models = client.get("/api/tags").get("models", [])
    if as_json:
        click.echo(orjson.dumps(models, option=orjson.OPT_INDENT_2).decode())
        return True
    table = [["NAME", "ID", "SIZE", "MODIFIED"]]
    table += [
        [
            m["name"],
            m.get("digest", "")[:12],
            human(m.get("size", 0)),
            _ago(m.get("modified_at", "")),
        ]
        for m in models
    ]
    click.echo(_columns(table))
    return True


# ---- formatting -----------------------------------------------------------------------------


def _describe(info: dict[str, Any]) -> str:
    details = info.get("details") or {}
    meta = info.get("model_info") or {}
    family = details.get("family", "")
    facts = [
        ("architecture", family),
        ("parameters", details.get("parameter_size", "")),
        ("context length", meta.get(f"{family}.context_length", "")),
        ("embedding length", meta.get(f"{family}.embedding_length", "")),
        ("quantization", details.get("quantization_level", "")),
    ]
    lines = ["  Model"] + [f"    {k:<20}{v}" for k, v in facts if v not in ("", None)]
    lines += ["", "  Capabilities"] + [f"    {c}" for c in info.get("capabilities") or []]
    if info.get("parameters"):
        lines += ["", "  Parameters"] + [f"    {p}" for p in info["parameters"].splitlines()]
    if info.get("license"):
        lines += ["", "  License", f"    {info['license'].splitlines()[0]}"]
    return "\n".join(lines) + "\n"


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "    ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _when(text: str) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def _until(text: str) -> str:
    seconds = _when(text)
    if seconds is None or text.startswith("9999"):
        return "Forever"
    return "Stopping..." if seconds <= 0 else f"{_span(seconds)} from now"


def _ago(text: str) -> str:
    seconds = _when(text)
    return "" if seconds is None else f"{_span(-seconds)} ago"


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{max(int(seconds), 0)} seconds"
