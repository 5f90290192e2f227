"""What one `modelyard bench` run is asked to do, read and checked before any request goes out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from modelyard.client import ClientError

PROTOCOLS = ("kserve-http", "kserve-grpc", "openai")
ARRIVALS = ("poisson", "fixed")


class BenchError(ClientError):
    """A run that cannot go ahead: a bad option, no server, no such model (the CLI shows it as
    `error: MESSAGE`)."""


@dataclass(frozen=True)
class Step:
    """One load level: `concurrency` requests in flight (closed loop), or `rate` requests a
    second arriving whatever the answers do (open loop)."""

    mode: str  # "concurrency" | "rate"
    load: float

    @property
    def label(self) -> str:
        return f"c={self.load:g}" if self.mode == "concurrency" else f"rate={self.load:g}/s"


@dataclass(frozen=True)
class Plan:
    model: str
    url: str = "http://127.0.0.1:8000"
    grpc_url: str = ""  # host:port; default: --url's host, port 8001
    protocol: str = ""  # "" picks: openai for a text generator, else kserve-http
    steps: tuple[Step, ...] = (Step("concurrency", 1),)
    arrival: str = "poisson"
    duration_s: float = 10.0
    requests: int = 0  # per step; 0: run for duration_s instead
    warmup_s: float = 2.0
    batch: int = 1
    input_file: Path | None = None
    prompt_tokens: int = 64
    output_tokens: int = 64
    timeout_s: float = 60.0
    seed: int = 0
    api_key: str = ""

    @property
    def grpc_target(self) -> str:
        if self.grpc_url:
            return self.grpc_url.removeprefix("grpc://").removeprefix("http://")
        host = urlsplit(self.url).hostname or "127.0.0.1"
        return f"{host}:8001"


def parse_numbers(text: str, option: str, integer: bool) -> tuple[float, ...]:
    """`1,4,16` -> (1, 4, 16): each value positive."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(int(part)) if integer else float(part)
        except ValueError:
            kind = "whole numbers" if integer else "numbers"
            raise BenchError(
                f"{option} takes {kind} separated by commas, e.g. 1,4,16; not {text!r}"
            ) from None
        if value <= 0:
            raise BenchError(f"{option} values must be above 0, not {part}")
        values.append(value)
    return tuple(values)


def steps_from(concurrency: str | None, rate: str | None) -> tuple[Step, ...]:
    if concurrency and rate:
        raise BenchError("give --concurrency (closed loop) or --rate (open loop), not both")
    if rate:
        return tuple(Step("rate", r) for r in parse_numbers(rate, "--rate", integer=False))
    levels = parse_numbers(concurrency or "1", "--concurrency", integer=True)
    return tuple(Step("concurrency", c) for c in levels)


def check(plan: Plan) -> None:
    """Refuse what could never run, with what to change."""
    if plan.protocol and plan.protocol not in PROTOCOLS:
        raise BenchError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {plan.protocol!r}")
    if plan.arrival not in ARRIVALS:
        raise BenchError(f"--arrival must be one of {', '.join(ARRIVALS)}")
    if plan.duration_s <= 0 and plan.requests <= 0:
        raise BenchError("give a --duration above 0 s or a number of --requests per step")
    if plan.requests < 0:
        raise BenchError("--requests must be 0 (use --duration) or more")
    if plan.warmup_s < 0:
        raise BenchError("--warmup must be 0 s or more")
    if plan.batch < 1:
        raise BenchError("--batch must be 1 or more")
    if plan.prompt_tokens < 1 or plan.output_tokens < 1:
        raise BenchError("--prompt-tokens and --output-tokens must be 1 or more")
    if urlsplit(plan.url).scheme not in ("http", "https"):
        raise BenchError(f"--url must be an http:// or https:// address, not {plan.url!r}")
    if plan.input_file is not None and not plan.input_file.is_file():
        raise BenchError(f"--input {plan.input_file}: no such file")
