"""A text generator's knob and its measurement for `modelyard tune`.

The knob is the number of sequence slots (`n_seq_max`): how many requests generate at once,
drawing on the KV cells the rules sized for the memory budget (`kv_size`, left as the rules
set it: a measurement of short prompts cannot tell what more cells are worth, only what they
cost). Fewer slots make each stream faster and queue the rest behind whole generations; more
slots let every client start at once and share the steps.

Each candidate is measured through a real server (front.py's `FrontServer`, the model
reloaded with the candidate) with `modelyard bench`'s streamed-completions client: a warm-up
request, then a few requests at one stream and a closed loop of N streams, each request a
different prompt of PROMPT_TOKENS tokens and exactly OUTPUT_TOKENS tokens out. The figures
(advisor/tuned.py's `Figures` in "tok/s"): generated tokens/s at N streams, the time to the
first token at p50 alone and p99 at N. The latency goal scores the p99 at N (for an LLM,
queueing is the latency); throughput scores tokens/s.
"""

from __future__ import annotations

import asyncio

import numpy as np

from modelyard.advisor.tuned import Figures
from modelyard.bench.clients import OpenAIStream
from modelyard.bench.load import StepResult, run_step
from modelyard.bench.options import Plan, Step
from modelyard.errors import Internal
from modelyard.spec.config import ModelConfig
from modelyard.tuning.space import Knob

#: Runtimes whose text generators the search knows.
LLM_TUNABLE = ("llamacpp",)
SLOTS = "parameters.n_seq_max"
#: The slot ladder (the rules' pick joins it).
SLOT_LADDER = (4, 8, 16, 32)
#: Streams of the loaded measurement unless --concurrency says.
LLM_CONCURRENCY = 16
PROMPT_TOKENS = 64
OUTPUT_TOKENS = 32
#: Requests per stream in the loaded measurement, and alone.
ROUNDS, ALONE = 2, 2


def llm_knobs(rules: ModelConfig) -> list[Knob]:
    """The slot ladder around the rules' pick."""
    chosen = int(rules.parameters.get("n_seq_max", SLOT_LADDER[0]))
    return [Knob(SLOTS, tuple(sorted({*SLOT_LADDER, chosen})))]


def measure(url: str, model: str, streams: int) -> Figures:
    """Drive `model` at `url`: one warm-up, ALONE requests at one stream, ROUNDS x `streams`
    requests at `streams` streams."""
    return asyncio.run(_measure(url, model, streams))


async def _measure(url: str, model: str, streams: int) -> Figures:
    plan = Plan(
        model=model,
        url=url,
        prompt_tokens=PROMPT_TOKENS,
        output_tokens=OUTPUT_TOKENS,
        timeout_s=300,
    )
    client = OpenAIStream(plan, streams)
    try:
        await _step(client, 1, 1)
        alone = await _step(client, 1, ALONE)
        loaded = await _step(client, streams, ROUNDS * streams)
    finally:
        await client.close()
    return Figures(
        rps=_tokens_per_s(loaded),
        p50_ms=_ttft_ms(alone, 50),
        p99_ms=_ttft_ms(loaded, 99),
        concurrency=streams,
        c1_rps=_tokens_per_s(alone),
        where="front",
        unit="tok/s",
    )


def decode_rate(url: str, model: str, streams: int, tokens: int) -> tuple[float, float]:
    """`streams` requests of `tokens` tokens out sent at once (after one warm-up): aggregate
    generated tokens/s and the median time to the first token in seconds (tuning/decode.py's
    figures for `modelyard advise`)."""
    return asyncio.run(_decode_rate(url, model, streams, tokens))


async def _decode_rate(url: str, model: str, streams: int, tokens: int) -> tuple[float, float]:
    plan = Plan(
        model=model, url=url, prompt_tokens=PROMPT_TOKENS, output_tokens=tokens, timeout_s=900
    )
    client = OpenAIStream(plan, streams)
    try:
        await _step(client, 1, 1)
        once = await _step(client, streams, streams)
    finally:
        await client.close()
    return _tokens_per_s(once), _ttft_ms(once, 50) / 1000


async def _step(client: OpenAIStream, streams: int, requests: int) -> StepResult:
    result = await run_step(client, Step("concurrency", streams), 0, requests)
    failed = [s.error for s in result.samples if s.error]
    if failed:
        raise Internal(f"{len(failed)} of {len(result.samples)} streams failed: {failed[0]}")
    return result


def _tokens_per_s(result: StepResult) -> float:
    tokens = sum(s.output_tokens for s in result.samples)
    return tokens / result.seconds if result.seconds else 0.0


def _ttft_ms(result: StepResult, q: float) -> float:
    ttfts = [s.ttft for s in result.samples if s.ttft is not None]
    return float(np.percentile(ttfts, q)) * 1000 if ttfts else float("inf")
