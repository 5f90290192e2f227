"""Measure a text generator's decode speed as a client sees it: `modelyard serve` in a child
process (tuning/front.py's), the model loaded with the advisor's settings, then streamed
OpenAI completions of `tokens` tokens each (temperature 0, `ignore_eos`) from 1 stream, then
from 8 at once; aggregate tokens/s = tokens written by all streams / wall time. The figures
are cached (advisor/decode.py) for `modelyard advise` to set the GGUF and the Transformers
build of one model side by side."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import orjson

from modelyard.advisor.apply import advise_config
from modelyard.advisor.decode import DECODE_RUNTIMES, DecodeFigures, save_decode
from modelyard.advisor.hardware import Hardware, probe
from modelyard.advisor.inspect import inspect_artifact
from modelyard.errors import Internal, InvalidArgument
from modelyard.repository.scan import ModelSource
from modelyard.tuning.front import FrontServer

#: Stream counts measured: one client alone, and eight at once.
STREAMS = (1, 8)
#: The settings a measurement records (what decides the figures), from the model's metadata.
_SETTINGS = ("n_ctx", "n_seq_max", "n_threads", "n_batch", "kv_size", "dtype")
_PROMPT = "Write a short story about a robot who learns to paint. Robot number {}:"


@dataclass
class DecodeResult:
    name: str
    figures: DecodeFigures
    cache: Path
    seconds: float


def decode_runtime(source: ModelSource, hw: Hardware) -> str | None:
    """The runtime a text generator would be served with here, or None for any other model."""
    if source.error or not source.versions or source.config.pipeline is not None:
        return None
    artifact = source.versions[max(source.versions)]
    try:
        if not inspect_artifact(artifact).generates_text:
            return None
    except InvalidArgument:
        return None
    runtime = advise_config(source.config, artifact, hardware=hw).runtime or ""
    return runtime if runtime in DECODE_RUNTIMES else None


def measure_decode(
    source: ModelSource,
    tokens: int = 32,
    hardware: Hardware | None = None,
    progress: Callable[[str], None] = print,
) -> DecodeResult:
    """Serve `source` with the advisor's settings, measure it at 1 and 8 streams, cache."""
    began = time.monotonic()
    hw = hardware or probe()
    runtime = decode_runtime(source, hw)
    if runtime is None:
        raise InvalidArgument(f"model {source.name!r} is not a text generator")
    progress(f"{source.name}: {runtime}, decode tokens/s at {' and '.join(map(str, STREAMS))}")
    root = source.path.parent
    with FrontServer(root, source.name, trust_pickle=False) as server:
        settings = _load(server.url, source.name)
        tok_s, ttft_s = {}, {}
        for streams in STREAMS:
            rate, ttft = asyncio.run(_drive(server.url, source.name, streams, tokens))
            tok_s[streams], ttft_s[streams] = rate, ttft
            progress(f"  {streams} stream{'s' * (streams != 1)}: {rate:.3g} tok/s")
    figures = DecodeFigures(runtime, tok_s, ttft_s, tokens, settings, date.today().isoformat())
    cache = save_decode(source.versions[max(source.versions)], figures, hw)
    return DecodeResult(source.name, figures, cache, time.monotonic() - began)


def _load(url: str, name: str) -> dict[str, str]:
    """Load the model (no config: the advisor's settings); the settings it loaded with."""
    answer = httpx.post(f"{url}/v2/repository/models/{name}/load", timeout=900)
    if answer.status_code != 200:
        raise Internal(f"the server could not load {name!r}: {answer.text}")
    parameters = httpx.get(f"{url}/v2/models/{name}", timeout=30).json().get("parameters", {})
    return {k: str(parameters[k]) for k in _SETTINGS if k in parameters}


async def _drive(url: str, name: str, streams: int, tokens: int) -> tuple[float, float]:
    """Aggregate tokens/s and the median time to first token of `streams` streams at once."""
    async with httpx.AsyncClient(timeout=900) as client:
        await _stream(client, url, name, 0, 4)  # warm-up
        started = time.perf_counter()
        done = await asyncio.gather(
            *(_stream(client, url, name, i + 1, tokens) for i in range(streams))
        )
        seconds = time.perf_counter() - started
    return sum(n for n, _ in done) / seconds, statistics.median(t for _, t in done)


async def _stream(
    client: httpx.AsyncClient, url: str, name: str, index: int, tokens: int
) -> tuple[int, float]:
    body = {
        "model": name,
        "prompt": _PROMPT.format(index),
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first, written = 0.0, 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as reply:
        if reply.status_code != 200:
            raise Internal(f"the server answered {reply.status_code}: {await reply.aread()!r}")
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = orjson.loads(line[6:])
            if event.get("choices") and not first:
                first = time.perf_counter() - started
            usage = event.get("usage") or {}
            written = int(usage.get("completion_tokens") or written)
    return written, first


def decode_all(
    path: Path, tokens: int = 32, progress: Callable[[str], None] = print
) -> list[DecodeResult]:
    """Measure every text generator at `path` (a model file or folder, or a repository)."""
    from modelyard.tuning.search import sources_at

    hw = probe()
    return [
        measure_decode(source, tokens, hw, progress)
        for source in sources_at(path)
        if decode_runtime(source, hw) is not None
    ]
