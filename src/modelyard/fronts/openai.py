"""The OpenAI API (as vLLM serves it): models, chat completions, completions, embeddings,
tokenize / detokenize; non-streamed JSON or SSE streams. Only translates; the LLM plane and
its engines do the work. Errors are `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from modelyard import __version__
from modelyard.core.llm import LLMPlane
from modelyard.errors import Code, InvalidArgument, ModelyardError
from modelyard.fronts.http_common import (
    HTTP_STATUS,
    json_response,
    parse_json,
    read_body,
    until_disconnect,
)
from modelyard.fronts.openai_output import Choices, chat_chunk, completion_chunk
from modelyard.fronts.openai_schema import (
    ChatBody,
    Common,
    CompletionBody,
    read_chat,
    read_completion,
)
from modelyard.spec.generation import Delta

log = logging.getLogger("modelyard.openai")

Handler = Callable[[Request], Awaitable[Response]]
Deltas = AsyncGenerator[tuple[int, Delta], None]

_ERROR_TYPES = {
    Code.INVALID_ARGUMENT: "invalid_request_error",
    Code.FAILED_PRECONDITION: "invalid_request_error",
    Code.PAYLOAD_TOO_LARGE: "invalid_request_error",
    Code.UNAUTHENTICATED: "authentication_error",
    Code.NOT_FOUND: "not_found_error",
    Code.UNAVAILABLE: "service_unavailable_error",
    Code.RESOURCE_EXHAUSTED: "rate_limit_error",
    Code.DEADLINE_EXCEEDED: "timeout_error",
    Code.INTERNAL: "server_error",
}


def error_body(exc: ModelyardError) -> dict[str, Any]:
    code = "model_not_found" if exc.code is Code.NOT_FOUND else exc.code.value.lower()
    return {
        "error": {
            "message": exc.message,
            "type": _ERROR_TYPES[exc.code],
            "param": None,
            "code": code,
        }
    }


class OpenAIFront:
    def __init__(self, plane: LLMPlane, max_request_bytes: int) -> None:
        self.plane = plane
        self.max_request_bytes = max_request_bytes

    def routes(self) -> list[BaseRoute]:
        table: list[tuple[str, Handler, str]] = [
            ("/v1/models", self.list_models, "GET"),
            ("/v1/models/{model:path}", self.get_model, "GET"),
            ("/v1/chat/completions", self.chat_completions, "POST"),
            ("/v1/completions", self.completions, "POST"),
            ("/v1/embeddings", self.embeddings, "POST"),
            ("/tokenize", self.tokenize, "POST"),
            ("/detokenize", self.detokenize, "POST"),
            ("/health", self.health, "GET"),
            ("/version", self.version, "GET"),
        ]
        return [Route(path, _guard(handler), methods=[method]) for path, handler, method in table]

    # ---- models ------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        data = [self._model_card(v.name, m.n_ctx) for v, m in self.plane.models()]
        return json_response({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        version, model = self.plane.get(request.path_params["model"])
        return json_response(self._model_card(version.name, model.n_ctx))

    def _model_card(self, name: str, n_ctx: int) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "modelyard",
            "root": name,
            "max_model_len": n_ctx,
        }

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def version(self, request: Request) -> Response:
        return json_response({"version": __version__})

    # ---- generation --------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        body = read_chat(await self._json(request))
        async with self.plane.hold(body.model) as (_, model):
            text = self.plane.chat_prompt(
                body.model,
                model,
                body.messages,
                add_generation_prompt=body.add_generation_prompt,
                **body.template_kwargs,
            )
            prompt = await self.plane.tokenize(model, text)
            if model.template is not None and model.template.stop:
                body.params.stop = (*body.params.stop, *model.template.stop)
            return await self._generate(request, body, [prompt], [""], chat=True)

    async def completions(self, request: Request) -> Response:
        body = read_completion(await self._json(request))
        async with self.plane.hold(body.model) as (_, model):
            prompts = [
                p if isinstance(p, list) else await self.plane.tokenize(model, p)
                for p in body.prompts
            ]
            echoes = [
                (p if isinstance(p, str) else model.detokenize(p)) if body.echo else ""
                for p in body.prompts
            ]
            return await self._generate(request, body, prompts, echoes, chat=False)

    async def _generate(
        self,
        request: Request,
        body: ChatBody | CompletionBody,
        prompts: list[list[int]],
        echoes: list[str],
        chat: bool,
    ) -> Response:
        _, model = self.plane.get(body.model)
        if body.structured is not None:
            body.params.grammar = model.grammar(*body.structured)
        choices = Choices(body.model, chat, prompts, body.n, model.detokenize)
        streams = [
            self.plane.generate(body.model, prompt, _with_seed(body, i))
            for prompt in prompts
            for i in range(body.n)
        ]
        merged = _merge(streams)
        try:
            first = await anext(merged)
        except BaseException:
            await merged.aclose()
            raise
        if not body.stream:
            return await until_disconnect(request, self._collect(choices, first, merged, echoes))
        return StreamingResponse(
            self._sse(choices, first, merged, body),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _collect(
        self, choices: Choices, first: tuple[int, Delta], rest: Deltas, echoes: list[str]
    ) -> Response:
        try:
            choices.add(*first)
            async for index, delta in rest:
                choices.add(index, delta)
        finally:
            await rest.aclose()
        return json_response(choices.response(echoes))

    async def _sse(
        self, choices: Choices, first: tuple[int, Delta], rest: Deltas, body: Common
    ) -> AsyncIterator[bytes]:
        make = chat_chunk if choices.chat else completion_chunk
        try:
            for index in range(len(choices.prompts) * body.n if choices.chat else 0):
                yield _event(make(choices, index, None, role=True, usage=body.include_usage))
            yield _event(make(choices, first[0], first[1], usage=body.include_usage))
            async for index, delta in rest:
                yield _event(make(choices, index, delta, usage=body.include_usage))
            if body.include_usage:
                yield _event(choices.usage_chunk())
        except ModelyardError as exc:
            yield _event(error_body(exc))
        finally:
            await rest.aclose()
        yield b"data: [DONE]\n\n"

    # ---- embeddings and tokens ---------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        body = await self._json(request)
        name, texts = _embedding_input(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise InvalidArgument("encoding_format must be float or base64")
        vectors, tokens = await self.plane.embed(name, texts)
        dims = body.get("dimensions")
        if dims is not None:
            vectors = [_shorten(v, dims) for v in vectors]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _base64(v) if encoding == "base64" else v,
            }
            for i, v in enumerate(vectors)
        ]
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def tokenize(self, request: Request) -> Response:
        body = await self._json(request)
        name = _model_name(body)
        async with self.plane.hold(name) as (_, model):
            if body.get("messages") is not None:
                from modelyard.core import chat

                text = self.plane.chat_prompt(
                    name,
                    model,
                    chat.normalize(body["messages"]),
                    add_generation_prompt=bool(body.get("add_generation_prompt", True)),
                )
            elif isinstance(body.get("prompt"), str):
                text = body["prompt"]
            else:
                raise InvalidArgument("tokenize needs prompt (a string) or messages")
            tokens = await self.plane.tokenize(model, text)
        return json_response({"count": len(tokens), "max_model_len": model.n_ctx, "tokens": tokens})

    async def detokenize(self, request: Request) -> Response:
        body = await self._json(request)
        _, model = await self.plane.acquire(_model_name(body))
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise InvalidArgument("tokens must be a list of token ids")
        return json_response({"prompt": model.detokenize(tokens)})

    async def _json(self, request: Request) -> Any:
        body = parse_json(await read_body(request, self.max_request_bytes))
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return body


# ---- helpers --------------------------------------------------------------------------------


def _with_seed(body: Common, i: int) -> Any:
    if i == 0 or body.params.seed is None:
        return body.params
    return dataclasses.replace(body.params, seed=(body.params.seed + i) & 0xFFFFFFFF)


async def _merge(streams: list[AsyncIterator[Delta]]) -> Deltas:
    """Deltas of several generations as they come, tagged with the stream's index; closing
    this closes (aborts) every stream."""
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Delta]) -> None:
        try:
            async for delta in stream:
                await queue.put((index, delta))
        except Exception as exc:
            await queue.put((index, exc))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            index, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _model_name(body: dict[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("model is required")
    return name


def _embedding_input(body: dict[str, Any]) -> tuple[str, list[str]]:
    name = _model_name(body)
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidArgument("input must be a string or a non-empty list of strings")
    return name, texts


def _shorten(vector: list[float], dims: Any) -> list[float]:
    if isinstance(dims, bool) or not isinstance(dims, int) or not 0 < dims <= len(vector):
        raise InvalidArgument(f"dimensions must be from 1 to {len(vector)}")
    head = vector[:dims]
    norm = sum(x * x for x in head) ** 0.5
    return [x / norm for x in head] if norm else head


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _guard(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ModelyardError as exc:
            return json_response(error_body(exc), HTTP_STATUS[exc.code])

    return guarded
