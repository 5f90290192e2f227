"""References on uvicorn (uvloop, httptools, one process): BENCH_MODE=floor answers a constant
(the HTTP floor); BENCH_MODE=inline parses the KServe v2 JSON and runs the model inline on the
event loop at batch 1 (the single-request latency reference). Neither is a product."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HEADERS = [(b"content-type", b"application/json")]
CONSTANT = b'{"model_name":"mlp","outputs":[]}'


async def _body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": body})


async def floor(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _body(receive)
        await _answer(send, CONSTANT)


class Inline:
    def __init__(self, model: str) -> None:
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = orjson.loads(await _body(receive))["inputs"][0]
        x = np.asarray(request["data"], dtype=np.float32).reshape(request["shape"])
        y = self.session.run(None, {"x": x})[0]
        output = {
            "name": "y",
            "shape": list(y.shape),
            "datatype": "FP32",
            "data": y.ravel().tolist(),
        }
        await _answer(send, orjson.dumps({"model_name": "mlp", "outputs": [output]}))


def main() -> None:
    mode = os.environ["BENCH_MODE"]
    app = floor if mode == "floor" else Inline(os.environ["BENCH_MODEL"])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
