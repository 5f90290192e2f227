"""Streams share engine steps, and a client that goes away frees its slot at once."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import openai
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(60)


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([^\s{]+)(?:\{([^}]*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(",")))
        if all(part in found for part in want.split(",") if part):
            total += float(match.group(3))
    return total


def test_disconnected_stream_frees_its_slot(llm_server: ServerProcess) -> None:
    url = llm_server.url
    aborted = _metric(url, "vllm:request_success_total", model_name="tiny", finished_reason="abort")
    body = {
        "model": "tiny",
        "prompt": "hello",
        "max_tokens": 4000,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream("POST", f"{url}/v1/completions", json=body) as reply:
        lines = reply.iter_lines()
        for _ in range(5):
            next(lines)
        assert _metric(url, "vllm:num_requests_running", model_name="tiny") == 1
    deadline = time.monotonic() + 5
    while _metric(url, "vllm:num_requests_running", model_name="tiny") != 0:
        assert time.monotonic() < deadline, "the slot was not freed"
        time.sleep(0.02)
    assert (
        _metric(url, "vllm:request_success_total", model_name="tiny", finished_reason="abort")
        == aborted + 1
    )


def test_dropped_non_streamed_request_is_aborted(llm_server: ServerProcess) -> None:
    url = llm_server.url
    aborted = _metric(url, "vllm:request_success_total", model_name="tiny", finished_reason="abort")
    body = {"model": "tiny", "prompt": "hello", "max_tokens": 4000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/completions", json=body, timeout=httpx.Timeout(5, read=0.3))
    deadline = time.monotonic() + 5
    while (
        _metric(url, "vllm:request_success_total", model_name="tiny", finished_reason="abort")
        != aborted + 1
    ):
        assert time.monotonic() < deadline, "the request was not aborted"
        time.sleep(0.02)
    assert _metric(url, "vllm:num_requests_running", model_name="tiny") == 0


def test_concurrent_streams_share_steps(llm_server: ServerProcess) -> None:
    url = llm_server.url
    steps = _metric(url, "vllm:iteration_tokens_total_count", model_name="tiny")
    tokens = _metric(url, "vllm:generation_tokens_total", model_name="tiny")
    texts = asyncio.run(_streams(url, 4, 300))
    assert len(texts) == 4 and all(texts)
    new_steps = _metric(url, "vllm:iteration_tokens_total_count", model_name="tiny") - steps
    new_tokens = _metric(url, "vllm:generation_tokens_total", model_name="tiny") - tokens
    assert new_tokens == 4 * 300
    # one stream alone would need a step per token; four together share most steps
    assert new_steps < 0.6 * new_tokens, (new_steps, new_tokens)


async def _streams(url: str, count: int, max_tokens: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

    async def one(i: int) -> str:
        stream = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": f"story number {i}"}],
            max_tokens=max_tokens,
            temperature=0.7,
            seed=i,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    try:
        return list(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        await client.close()
