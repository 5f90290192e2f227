"""One request over each protocol. A client's `send` never raises for a failed request: it
returns an `Outcome` whose `error` names the kind (`HTTP 503`, `UNAVAILABLE`, `timeout`, ...),
so a step counts errors by kind and goes on. Streaming clients note when each token arrived."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np
import orjson

from modelyard import tensors
from modelyard.bench.http1 import HTTP1, Failure
from modelyard.bench.inputs import Request, json_body
from modelyard.bench.options import BenchError, Plan

_JSON = {"Content-Type": "application/json"}


@dataclass
class Outcome:
    error: str = ""
    token_times: list[float] = field(default_factory=list)  # perf_counter at each token
    output_tokens: int = 0
    prompt_tokens: int = 0


class Client(Protocol):
    async def send(self, index: int) -> Outcome: ...

    async def close(self) -> None: ...


def headers(plan: Plan) -> dict[str, str]:
    return {"Authorization": f"Bearer {plan.api_key}"} if plan.api_key else {}


def http_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return type(exc).__name__


def _pool(connections: int, plan: Plan, tls: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=plan.url,
        timeout=plan.timeout_s,
        limits=limits,
        headers=headers(plan),
        verify=tls or True,
    )


class Lanes:
    """One httpx client of one connection per request in flight, up to `most` (the streams):
    httpx's own pool of many connections costs it far more per request (64 in flight on the
    development machine: 112 req/s through one pool, 640 through 64 clients)."""

    def __init__(self, plan: Plan, most: int) -> None:
        self.plan, self.most = plan, most
        self.tls = httpx.create_ssl_context()  # once: each client would read the CA file again
        self.every: list[httpx.AsyncClient] = []
        self.free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        if self.free.empty() and len(self.every) < self.most:
            client = _pool(1, self.plan, self.tls)
            self.every.append(client)
        else:
            client = await self.free.get()
        try:
            yield client
        finally:
            self.free.put_nowait(client)

    async def close(self) -> None:
        for client in self.every:
            await client.aclose()


class KServeHTTP:
    """KServe v2 JSON over `http1.HTTP1` (a tenth of httpx's CPU per request)."""

    def __init__(self, plan: Plan, requests: list[Request], connections: int, body: bytes = b""):
        self.http = HTTP1(plan.url, headers(plan), plan.timeout_s, connections)
        path = f"/v2/models/{plan.model}/infer"
        bodies = [body] if body else [json_body(r) for r in requests]
        self.requests = [self.http.request(path, b, "application/json") for b in bodies]

    async def send(self, index: int) -> Outcome:
        try:
            status = await self.http.send(self.requests[index % len(self.requests)])
        except Failure as exc:
            return Outcome(exc.kind)
        return Outcome("" if status == 200 else f"HTTP {status}")

    async def close(self) -> None:
        await self.http.close()


class KServeGRPC:
    def __init__(self, plan: Plan, requests: list[Request]) -> None:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.grpc = grpc
        options = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ]
        self.channel = grpc.aio.insecure_channel(plan.grpc_target, options=options)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        key = plan.api_key
        self.metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self.timeout = plan.timeout_s
        self.messages = [_message(service_pb2, plan.model, r) for r in requests]

    async def send(self, index: int) -> Outcome:
        message = self.messages[index % len(self.messages)]
        try:
            await self.stub.ModelInfer(message, timeout=self.timeout, metadata=self.metadata)
        except self.grpc.aio.AioRpcError as exc:
            return Outcome(exc.code().name)
        return Outcome()

    async def close(self) -> None:
        await self.channel.close()


def _message(service_pb2: Any, model: str, request: Request) -> Any:
    inputs = [
        service_pb2.ModelInferRequest().InferInputTensor(
            name=t.name, datatype=t.datatype, shape=t.shape
        )
        for t in request
    ]
    raw = [tensors.to_binary(t.array) for t in request]
    return service_pb2.ModelInferRequest(model_name=model, inputs=inputs, raw_input_contents=raw)


class OpenAIStream:
    """Streamed completions (`/v1/completions`): a prompt of about `prompt_tokens` tokens, a
    different one each request (so the prefix cache does not answer for the model), exactly
    `output_tokens` tokens out (max_tokens with ignore_eos)."""

    def __init__(self, plan: Plan, connections: int) -> None:
        self.lanes = Lanes(plan, connections)
        self.model = plan.model
        self.prompt_tokens = plan.prompt_tokens
        self.output_tokens = plan.output_tokens
        self.rng = np.random.default_rng(plan.seed)

    def body(self) -> bytes:
        words = self.rng.choice(_PROMPT_WORDS, size=self.prompt_tokens)
        return orjson.dumps(
            {
                "model": self.model,
                "prompt": " ".join(words),
                "max_tokens": self.output_tokens,
                "ignore_eos": True,
                "temperature": 0.8,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )

    async def send(self, index: int) -> Outcome:
        outcome = Outcome()
        body = self.body()
        try:
            async with (
                self.lanes.lane() as http,
                http.stream("POST", "/v1/completions", content=body, headers=_JSON) as reply,
            ):
                if reply.status_code != 200:
                    await reply.aread()
                    return Outcome(f"HTTP {reply.status_code}")
                async for line in reply.aiter_lines():
                    _read_event(line, outcome)
        except httpx.HTTPError as exc:
            return Outcome(http_error(exc))
        if not outcome.error and not outcome.token_times:
            outcome.error = "no tokens"
        return outcome

    async def close(self) -> None:
        await self.lanes.close()


# common English words: one token each in most vocabularies
_PROMPT_WORDS = (  # noqa: SIM905 - a sentence of words reads better than a list of strings
    "the of and to in is that it was for on are as with his they at be this from have or by one "
    "had not but what all were when we there can an your which their said if do will each about "
    "how up out them then she many some so these would other into has more her two like him see"
).split()


def _read_event(line: str, outcome: Outcome) -> None:
    if not line.startswith("data: {"):
        return
    event = orjson.loads(line[6:])
    if event.get("error"):
        outcome.error = "stream error"
        return
    for choice in event.get("choices") or []:
        if choice.get("text"):
            outcome.token_times.append(time.perf_counter())
    usage = event.get("usage")
    if usage:
        outcome.output_tokens = int(usage.get("completion_tokens") or 0)
        outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)


def is_text_generator(metadata: dict[str, Any]) -> bool:
    inputs = {i.get("name") for i in metadata.get("inputs") or []}
    outputs = {o.get("name") for o in metadata.get("outputs") or []}
    return "text_input" in inputs and "text_output" in outputs


async def model_metadata(plan: Plan) -> dict[str, Any]:
    """The model's KServe v2 metadata, or a BenchError saying what is wrong."""
    async with httpx.AsyncClient(base_url=plan.url, timeout=10, headers=headers(plan)) as http:
        try:
            reply = await http.get(f"/v2/models/{plan.model}")
        except httpx.HTTPError as exc:
            raise BenchError(
                f"no server answers at {plan.url} ({http_error(exc)}): start one with "
                "`modelyard serve`, or point --url at it"
            ) from None
    if reply.status_code == 401:
        raise BenchError(f"{plan.url} wants an API key: set MODELYARD_API_KEY or --api-key")
    if reply.status_code != 200:
        raise BenchError(f"model {plan.model!r} at {plan.url}: {_reason(reply)}")
    metadata: dict[str, Any] = reply.json()
    return metadata


def _reason(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("error") or reply.text)
    except ValueError:
        return f"HTTP {reply.status_code}"
