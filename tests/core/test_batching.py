"""Dynamic batching, priorities, queue limits, timeouts and instance groups on the real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http.aio as aioclient

from tests import models
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("batching")
    models.addsub_onnx(root / "addsub" / "1" / "model.onnx", scale=2.0)
    (root / "addsub" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 64\n'
        "dynamic_batching { max_queue_delay_microseconds: 20000 preferred_batch_size: [ 16 ] }\n"
    )
    models.slow_model(
        root,
        "ordered",
        "max_batch_size: 0\ndynamic_batching { priority_levels: 2 "
        "default_priority_level: 2 default_queue_policy { max_queue_size: 4 } }\n",
    )
    models.slow_model(root, "pair", "max_batch_size: 0\ninstance_group [ { count: 2 } ]\n")
    with ServerProcess(str(root), log_path=root / "server.log") as server:
        yield server


def _addsub_inputs(k: int) -> list[aioclient.InferInput]:
    a = np.full((1, 4), k, dtype=np.float32)
    b = np.arange(4, dtype=np.int32).reshape(1, 4)
    i0 = aioclient.InferInput("INPUT0", [1, 4], "FP32")
    i0.set_data_from_numpy(a)
    i1 = aioclient.InferInput("INPUT1", [1, 4], "INT32")
    i1.set_data_from_numpy(b)
    return [i0, i1]


def _slow_body(value: float, **parameters: int) -> dict[str, object]:
    body: dict[str, object] = {
        "inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [value]}]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def test_concurrent_requests_are_batched_with_unbatched_answers(
    batching_server: ServerProcess,
) -> None:
    async def run() -> list[np.ndarray]:
        client = aioclient.InferenceServerClient(batching_server.http_addr)
        try:
            results = await asyncio.gather(
                *[client.infer("addsub", _addsub_inputs(k)) for k in range(32)]
            )
            return [r.as_numpy("OUTPUT0") for r in results]
        finally:
            await client.close()

    outputs = asyncio.run(run())
    for k, out in enumerate(outputs):
        np.testing.assert_array_equal(out, (k + np.arange(4, dtype=np.float32)).reshape(1, 4) * 2)
    stats = httpx.get(f"{batching_server.url}/v2/models/addsub/stats").json()["model_stats"][0]
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert max(sizes) > 1, sizes
    assert stats["inference_count"] == 32
    assert stats["execution_count"] < 32
    assert stats["inference_stats"]["success"]["count"] == 32


async def _post_all(
    url: str, bodies: list[dict[str, object]], gap: float = 0.03
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        tasks = []
        for body in bodies:
            tasks.append(asyncio.create_task(client.post("/v2/models/ordered/infer", json=body)))
            await asyncio.sleep(gap)  # arrive in this order
        return list(await asyncio.gather(*tasks))


def test_priorities_order_the_queue(batching_server: ServerProcess) -> None:
    bodies = [
        _slow_body(0.0),
        _slow_body(1.0, priority=2),
        _slow_body(2.0, priority=2),
        _slow_body(3.0, priority=1),
    ]
    responses = asyncio.run(_post_all(batching_server.url, bodies))
    seq = {}
    for response in responses:
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        seq[outputs["Y"][0]] = outputs["SEQ"][0]
    # the first runs at once; the high-priority request overtakes the two queued before it
    assert seq[3.0] < seq[1.0] < seq[2.0], seq
    bad = httpx.post(
        f"{batching_server.url}/v2/models/ordered/infer", json=_slow_body(1, priority=5)
    )
    assert bad.status_code == 400 and "priority" in bad.json()["error"]


def test_full_queue_answers_429_at_once(batching_server: ServerProcess) -> None:
    started = time.monotonic()
    responses = asyncio.run(
        _post_all(batching_server.url, [_slow_body(float(k)) for k in range(9)], gap=0.005)
    )
    codes = [r.status_code for r in responses]
    assert codes.count(429) >= 3, codes
    assert codes.count(200) >= 5, codes
    rejected = [r for r in responses if r.status_code == 429]
    assert all(r.headers["retry-after"] == "1" for r in rejected)
    assert "queue of this model is full" in rejected[0].json()["error"]
    assert time.monotonic() - started < 0.3 * 9  # nobody waited for every execution
    ok = httpx.post(f"{batching_server.url}/v2/models/ordered/infer", json=_slow_body(1.0))
    assert ok.status_code == 200


def test_timeouts_drop_queued_work(batching_server: ServerProcess) -> None:
    def executions() -> int:
        stats = httpx.get(f"{batching_server.url}/v2/models/ordered/stats").json()
        return int(stats["model_stats"][0]["execution_count"])

    before = executions()
    bodies = [_slow_body(0.0), _slow_body(1.0, timeout=50_000)]
    first, late = asyncio.run(_post_all(batching_server.url, bodies))
    assert first.status_code == 200
    assert late.status_code == 504 and "timed out" in late.json()["error"]
    time.sleep(0.4)
    assert executions() - before == 1  # the timed-out request never ran
    bad = httpx.post(
        f"{batching_server.url}/v2/models/ordered/infer", json=_slow_body(1, timeout=-1)
    )
    assert bad.status_code == 400


def test_instance_group_runs_executions_in_parallel(batching_server: ServerProcess) -> None:
    async def run() -> float:
        async with httpx.AsyncClient(base_url=batching_server.url, timeout=30) as client:
            await client.post("/v2/models/pair/infer", json=_slow_body(0.0))  # warm
            start = time.monotonic()
            await asyncio.gather(
                *[client.post("/v2/models/pair/infer", json=_slow_body(float(k))) for k in range(4)]
            )
            return time.monotonic() - start

    elapsed = asyncio.run(run())
    assert elapsed < 0.3 * 4 * 0.8, elapsed  # two at a time: about 0.6 s, not 1.2 s


def test_metrics_scrape_parses_and_counts(batching_server: ServerProcess) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{batching_server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, sample: str, model: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if s.name == sample and s.labels.get("model") == model
        )

    assert (
        value(
            "modelyard_inference_request_success",
            "modelyard_inference_request_success_total",
            "addsub",
        )
        >= 32
    )
    assert value("modelyard_inference_count", "modelyard_inference_count_total", "addsub") >= 32
    assert (
        value("modelyard_inference_exec_count", "modelyard_inference_exec_count_total", "addsub")
        < 32
    )
    buckets = [
        s
        for s in families["modelyard_inference_batch_size"].samples
        if s.name.endswith("_bucket") and s.labels["model"] == "addsub"
    ]
    at_one = next(s.value for s in buckets if s.labels["le"] == "1")
    total = next(s.value for s in buckets if s.labels["le"] == "+Inf")
    assert total > at_one  # some executions carried more than one row
    assert "modelyard_inference_queue_depth" in families
    assert (
        value(
            "modelyard_inference_request_failure",
            "modelyard_inference_request_failure_total",
            "ordered",
        )
        >= 1
    )  # the timed-out and rejected requests of the earlier tests
