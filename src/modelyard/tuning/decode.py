"""Measure a text generator's decode speed as a client sees it: `modelyard serve` in a child
process (tuning/front.py's), the model loaded with the advisor's settings, then streamed
OpenAI completions of `tokens` tokens each (`ignore_eos`; tuning/llm.py's client, the one the
slot search measures with) from 1 stream, then from 8 at once; aggregate tokens/s = tokens
written by all streams / wall time. The figures
are cached (advisor/decode.py) for `modelyard advise` to set the GGUF and the Transformers
build of one model side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

from modelyard.advisor.apply import advise_config
from modelyard.advisor.decode import DECODE_RUNTIMES, DecodeFigures, save_decode
from modelyard.advisor.hardware import Hardware, probe
from modelyard.advisor.inspect import inspect_artifact
from modelyard.errors import Internal, InvalidArgument
from modelyard.repository.scan import ModelSource
from modelyard.tuning.front import FrontServer
from modelyard.tuning.llm import decode_rate

#: Stream counts measured: one client alone, and eight at once.
STREAMS = (1, 8)
#: The settings a measurement records (what decides the figures), from the model's metadata.
_SETTINGS = ("n_ctx", "n_seq_max", "n_threads", "n_batch", "kv_size", "dtype")


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
            rate, ttft = decode_rate(server.url, source.name, streams, tokens)
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
