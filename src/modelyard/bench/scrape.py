"""The server's own view during a run: /metrics read every quarter second, each reading turned
into what happened since the last one for the benchmarked model.

Tensor models (docs/metrics.md): mean rows per execution (`modelyard_inference_batch_size`),
executions a second, the queue depth. Text generators (vLLM's names): mean tokens per engine
step (`vllm:iteration_tokens_total`), generated tokens a second, running and waiting requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

INTERVAL_S = 0.25

BATCH = "modelyard_inference_batch_size"  # rows per execution (a histogram)
STEP = "vllm:iteration_tokens_total"  # tokens per engine step (a histogram)


def _read(text: str, model: str, llm: bool) -> dict[str, float]:
    """The values this run charts, summed over the model's versions."""
    label = "model_name" if llm else "model"
    wanted = {
        f"{BATCH}_sum": "rows",
        f"{BATCH}_count": "executions",
        "modelyard_inference_queue_depth": "queue_depth",
        f"{STEP}_sum": "step_tokens",
        f"{STEP}_count": "steps",
        "vllm:generation_tokens_total": "generated",
        "vllm:num_requests_running": "running",
        "vllm:num_requests_waiting": "waiting",
    }
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = wanted.get(s.name)
            if key and s.labels.get(label) == model:
                values[key] = values.get(key, 0.0) + float(s.value)
    return values


def point(t: float, step: str, now: dict[str, float], last: dict[str, float]) -> dict[str, Any]:
    """One timeline point: means and rates over the interval since `last`."""
    span = max(t - last.get("t", t - INTERVAL_S), 1e-9)

    def delta(key: str) -> float:
        return now.get(key, 0.0) - last.get(key, 0.0)

    out: dict[str, Any] = {"t": round(t, 3), "step": step}
    if "executions" in now:
        out["batch_mean"] = delta("rows") / delta("executions") if delta("executions") else None
        out["executions_s"] = delta("executions") / span
        out["queue_depth"] = now.get("queue_depth", 0.0)
    if "steps" in now:
        out["step_tokens_mean"] = delta("step_tokens") / delta("steps") if delta("steps") else None
        out["generated_tokens_s"] = delta("generated") / span
        out["running"] = now.get("running", 0.0)
        out["waiting"] = now.get("waiting", 0.0)
    return out


class Scraper:
    """Reads /metrics until stopped; `step` names the step each point falls in."""

    def __init__(self, http: httpx.AsyncClient, model: str, llm: bool) -> None:
        self.http, self.model, self.llm = http, model, llm
        self.step = "warm-up"
        self.points: list[dict[str, Any]] = []
        self.failed = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        origin = time.perf_counter()
        last: dict[str, float] = {}
        while True:
            try:
                reply = await self.http.get("/metrics")
                reply.raise_for_status()
            except httpx.HTTPError as exc:
                self.failed = f"/metrics: {exc}"
                return
            now = _read(reply.text, self.model, self.llm)
            now["t"] = time.perf_counter() - origin
            if last:
                self.points.append(point(now["t"], self.step, now, last))
            last = now
            await asyncio.sleep(INTERVAL_S)
