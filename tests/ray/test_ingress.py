"""The ingress's routing and merging, and the replica's ASGI plumbing, without a cluster: the
ingress over in-process stand-ins for the models' deployments (`tests/ray/local.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import Internal, InvalidArgument
from modelyard.ray.ingress import Coalescer, RayFront, json_body, merge_listings, model_named
from modelyard.ray.replica import Answer, Message, run_asgi
from tests.models import mlp_onnx, sklearn_skops
from tests.ray.local import local_front


def test_the_model_a_request_is_for() -> None:
    def named(path: str, body: bytes, encoding: str | None) -> str | None:
        return model_named(path, json_body(body, encoding))

    assert named("/v2/models/mlp/versions/1/infer", b"", None) == "mlp"
    assert named("/v2/repository/models/mlp/load", b"", None) == "mlp"
    assert named("/v1/chat/completions", b'{"model": "tiny"}', None) == "tiny"
    assert named("/api/chat", b'{"model": "tiny"}', "gzip") is None  # not read
    assert named("/v1/models", b"", None) is None
    assert named("/api/generate", b"{not json", None) is None
    assert named("/api/generate", b'{"model": 3}', None) is None


def test_listings_are_merged_each_model_once() -> None:
    index_a = [
        {"name": "a", "version": "1", "state": "READY"},
        {"name": "b", "version": "", "state": "UNAVAILABLE", "reason": "not loaded"},
    ]
    index_b = [
        {"name": "a", "version": "", "state": "UNAVAILABLE", "reason": "not loaded"},
        {"name": "b", "version": "1", "state": "READY"},
    ]
    merged = merge_listings([index_a, index_b])
    assert [(m["name"], m["state"]) for m in merged] == [("a", "READY"), ("b", "READY")]
    openai = merge_listings([{"object": "list", "data": [{"id": "x"}]}, {"data": [{"id": "y"}]}])
    assert openai == {"object": "list", "data": [{"id": "x"}, {"id": "y"}]}
    assert merge_listings([]) == []


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    mlp_onnx(tmp_path / "mlp.onnx")
    sklearn_skops(tmp_path / "iris.skops")
    return tmp_path


@pytest.mark.anyio
async def test_the_ingress_routes_each_request_to_its_models_server(repository: Path) -> None:
    async with local_front(repository) as front:
        transport = httpx.ASGITransport(app=front)
        async with httpx.AsyncClient(transport=transport, base_url="http://ray") as client:
            x = np.ones((2, 32), np.float32).tolist()
            body = {"inputs": [{"name": "x", "shape": [2, 32], "datatype": "FP32", "data": x}]}
            answer = await client.post("/v2/models/mlp/infer", json=body)
            assert answer.status_code == 200
            assert answer.json()["outputs"][0]["shape"] == [2, 4]
            unknown = await client.post("/v2/models/nope/infer", json=body)
            assert unknown.status_code == 404
            metadata = await client.get("/v2/models/iris")
            assert metadata.json()["inputs"][0]["name"] == "input"
            index = (await client.post("/v2/repository/index")).json()
            assert [(m["name"], m["state"]) for m in index] == [
                ("iris", "READY"),
                ("mlp", "READY"),
            ]
            assert (await client.get("/v2/health/ready")).status_code == 200
            too_big = await client.post("/v2/repository/index", content=b"x" * (2 << 20))
            assert too_big.status_code == 413


@pytest.mark.anyio
async def test_a_client_gone_mid_answer_cancels_the_apps_request() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stream = run_asgi(app, {"method": "GET", "path": "/"}, b"")
    first = await anext(stream)
    assert first["status"] == 200 and started.is_set()
    await stream.aclose()
    assert cancelled.is_set()


@pytest.mark.anyio
async def test_requests_of_one_loop_turn_cross_in_one_call_each_answered_alone() -> None:
    calls: list[list[str]] = []

    async def send_many(requests: list[InferRequest]) -> list[Answer]:
        calls.append([r.id or "" for r in requests])
        return [
            InvalidArgument(f"bad {r.id}") if r.id == "3" else InferResponse("m", "1", {}, r.id)
            for r in requests
        ]

    coalescer = Coalescer(send_many, limit=4)
    requests = [InferRequest("m", {}, id=str(i)) for i in range(6)]
    answers = await asyncio.gather(*map(coalescer.infer, requests), return_exceptions=True)
    assert calls == [["0", "1", "2", "3"], ["4", "5"]]  # one turn, split at the limit
    assert [a.id for a in answers if isinstance(a, InferResponse)] == ["0", "1", "2", "4", "5"]
    assert isinstance(answers[3], InvalidArgument) and answers[3].message == "bad 3"

    async def broken(requests: list[InferRequest]) -> list[Answer]:
        raise ConnectionError("the replica's node left")

    failed = await asyncio.gather(
        *map(Coalescer(broken, limit=4).infer, requests[:2]), return_exceptions=True
    )
    assert all(isinstance(f, Internal) and "node left" in f.message for f in failed)


class Recorder:
    """A deployment that records the affinity key each forwarded request came with."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str | None]] = []

    async def infer(self, request: InferRequest) -> InferResponse:
        raise AssertionError("not a KServe inference test")

    async def infer_stream(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        raise AssertionError("not a KServe inference test")
        yield  # an async generator, as the protocol's

    async def grpc(self, method: str, request: Any) -> Any:
        raise AssertionError("not a gRPC test")

    async def http(
        self, scope: dict[str, Any], body: bytes, affinity: str | None = None
    ) -> AsyncIterator[Message]:
        self.keys.append((scope["path"], affinity))
        yield {"type": "http.response.start", "status": 200, "headers": []}
        yield {"type": "http.response.body", "body": b"{}"}


@pytest.mark.anyio
async def test_text_generations_go_with_their_prefix_named_and_metrics_are_the_clusters() -> None:
    tiny = Recorder()

    async def metrics() -> bytes:
        return b"# every replica's\n"

    front = RayFront({"tiny": tiny}, 1 << 20, metrics)
    system = {"role": "system", "content": "You are a pirate."}
    turns = [
        [system, {"role": "user", "content": "hi"}],
        [
            system,
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "arr"},
            {"role": "user", "content": "where is it?"},
        ],
    ]
    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://ray") as client:
        for messages in turns:
            await client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages})
        await client.post("/api/generate", json={"model": "tiny", "prompt": "hi"})
        await client.post(
            "/api/generate", json={"model": "tiny", "prompt": "hi"}, headers={"x-session-id": "s"}
        )
        await client.get("/api/tags")
        await client.post("/v1/embeddings", json={"model": "tiny", "input": "hi"})
        scraped = await client.get("/metrics")
    assert scraped.text == "# every replica's\n"
    assert scraped.headers["content-type"].startswith("text/plain")
    chat, again, prompt, session, tags, embedding = tiny.keys
    assert chat[1] is not None and chat == again
    assert None not in (prompt[1], session[1]) and prompt[1] != session[1] != chat[1]
    assert tags == ("/api/tags", None) and embedding == ("/v1/embeddings", None)
