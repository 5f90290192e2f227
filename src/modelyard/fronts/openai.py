"""The OpenAI API (as vLLM serves it): models, chat completions, completions, embeddings,
tokenize / detokenize; non-streamed JSON or SSE streams. Only translates; the core's LLM
sessions and engines do the work. Every error, unexpected ones included, is OpenAI's
`{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard import __version__
from modelyard.core import chat
from modelyard.core.llm import Generation, LLMService, Session
from modelyard.errors import Code, InvalidArgument, ModelyardError
from modelyard.fronts.http_common import (
    HeldStream,
    guard,
    json_response,
    parse_json,
    read_body,
    unexpected,
    until_disconnect,
)
from modelyard.fronts.openai_output import Asked, Choices, chat_chunk, completion_chunk
from modelyard.fronts.openai_schema import (
    ChatBody,
    Common,
    CompletionBody,
    flag,
    read_chat,
    read_completion,
)
from modelyard.spec.generation import Delta

log = logging.getLogger("modelyard.openai")

Handler = Callable[[Request], Awaitable[Response]]

_ERROR_TYPES = {
    Code.INVALID_ARGUMENT: "invalid_request_error",
    Code.FAILED_PRECONDITION: "invalid_request_error",
    Code.PAYLOAD_TOO_LARGE: "invalid_request_error",
    Code.UNAUTHENTICATED: "authentication_error",
    Code.NOT_FOUND: "not_found_error",
    Code.UNAVAILABLE: "service_unavailable_error",
    Code.RESOURCE_EXHAUSTED: "rate_limit_error",
    Code.DEADLINE_EXCEEDED: "timeout_error",
    Code.UNIMPLEMENTED: "invalid_request_error",
    Code.INTERNAL: "server_error",
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """An error outside the handlers (no such route, wrong method) in OpenAI's shape."""
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


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
    def __init__(self, llm: LLMService, max_request_bytes: int) -> None:
        self.llm = llm
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
            ("/tokenizer_info", self.tokenizer_info, "GET"),
            ("/health", self.health, "GET"),
            ("/version", self.version, "GET"),
        ]
        return [
            Route(path, guard(handler, error_body), methods=[method])
            for path, handler, method in table
        ]

    # ---- models ------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        data = [self._model_card(s.name, s.n_ctx) for s in self.llm.loaded()]
        return json_response({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        session = self.llm.get(request.path_params["model"])
        return json_response(self._model_card(session.name, session.n_ctx))

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
        body.model = self.llm.resolve(body.model)  # TGI clients' "tgi" / "dummy"
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(self.llm.session(body.model))
            prompt = await session.chat(
                body.messages,
                body.params,
                tools=body.tools,
                add_generation_prompt=body.add_generation_prompt,
                **body.template_kwargs,
            )
            return await self._generate(request, stack, session, body, [prompt], [""])

    async def completions(self, request: Request) -> Response:
        body = read_completion(await self._json(request))
        body.model = self.llm.resolve(body.model)
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(self.llm.session(body.model))
            prompts = [
                p if isinstance(p, list) else await session.tokenize(p) for p in body.prompts
            ]
            echoes = [
                (p if isinstance(p, str) else session.pieces(p)) if body.echo else ""
                for p in body.prompts
            ]
            return await self._generate(request, stack, session, body, prompts, echoes)

    async def _generate(
        self,
        request: Request,
        stack: contextlib.AsyncExitStack,
        session: Session,
        body: ChatBody | CompletionBody,
        prompts: list[list[int]],
        echoes: list[str],
    ) -> Response:
        """Generate `n` choices per prompt; the first delta is awaited here, so an error
        before any token is an HTTP status. A stream takes over `stack` (the model's lease
        and the generation) and closes it after its last byte."""
        tools = body.tools if isinstance(body, ChatBody) else None
        session.constrain(body.params, body.structured, tools)
        chat = isinstance(body, ChatBody)
        asked = Asked(
            logprobs=body.params.logprobs is not None,
            echo=isinstance(body, CompletionBody) and body.echo,
            prompt_logprobs=body.show_prompt_logprobs,
        )
        choices = Choices(body.model, chat, prompts, body.n, session.piece, asked, echoes)
        generation = session.generate(
            [p for p in prompts for _ in range(body.n)],
            [_with_seed(body, i) for _ in prompts for i in range(body.n)],
        )
        stack.push_async_callback(generation.aclose)
        first = await anext(generation)
        if not body.stream:
            return await until_disconnect(request, _collect(choices, first, generation))
        return HeldStream(
            _sse(choices, first, generation, body),
            stack.pop_all(),
            "text/event-stream",
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ---- embeddings and tokens ---------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        body = await self._json(request)
        name, texts = _embedding_input(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise InvalidArgument("encoding_format must be float or base64")
        async with self.llm.session(name) as session:
            vectors, tokens = await session.embed(texts)
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
        """vLLM's `/tokenize`: a prompt, or messages through the chat template;
        `add_special_tokens` (default true) adds BOS; `model` may be left out with one model."""
        body = await self._json(request)
        add_special = flag(body, "add_special_tokens", True)
        async with self.llm.session(self.llm.name_or_only(body.get("model"))) as session:
            if body.get("messages") is not None:
                text = session.chat_text(
                    chat.normalize(body["messages"]),
                    add_generation_prompt=flag(body, "add_generation_prompt", True),
                )
            elif isinstance(body.get("prompt"), str):
                text = body["prompt"]
            else:
                raise InvalidArgument("tokenize needs prompt (a string) or messages")
            tokens = await session.tokenize(text, add_special=add_special)
            pieces = [session.piece(t).decode("utf-8", "replace") for t in tokens]
        out: dict[str, Any] = {"count": len(tokens), "max_model_len": session.n_ctx}
        out["tokens"] = tokens
        if flag(body, "return_token_strs", False):
            out["token_strs"] = pieces
        return json_response(out)

    async def detokenize(self, request: Request) -> Response:
        body = await self._json(request)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise InvalidArgument("tokens must be a list of token ids")
        async with self.llm.session(self.llm.name_or_only(body.get("model"))) as session:
            session.check_tokens(tokens)
            return json_response({"prompt": session.detokenize(tokens)})

    async def tokenizer_info(self, request: Request) -> Response:
        """vLLM's `/tokenizer_info`: special tokens, chat template and context of the model
        (`?model=NAME`, or the one loaded text model)."""
        name = self.llm.name_or_only(request.query_params.get("model"))
        async with self.llm.session(name) as session:
            return json_response(session.tokenizer_info())

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


async def _collect(choices: Choices, first: tuple[int, Delta], rest: Generation) -> Response:
    choices.add(*first)
    async for index, delta in rest:
        choices.add(index, delta)
    return json_response(choices.response())


async def _sse(
    choices: Choices, first: tuple[int, Delta], rest: Generation, body: Common
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
    except Exception as exc:
        yield _event(error_body(unexpected(exc, "an OpenAI stream")))
    yield b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _model_name(body: dict[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("model is required")
    return name


def _embedding_input(body: dict[str, Any]) -> tuple[str, list[str] | list[list[int]]]:
    """OpenAI's `input`: a text, texts, one input as token ids, or several as id lists."""
    name = _model_name(body)
    value = body.get("input")
    if isinstance(value, str):
        return name, [value]
    if isinstance(value, list) and value:
        if all(isinstance(t, str) for t in value):
            return name, list(value)
        if all(_is_id(t) for t in value):
            return name, [list(value)]
        if all(isinstance(t, list) and t and all(_is_id(i) for i in t) for t in value):
            return name, [list(t) for t in value]
    raise InvalidArgument(
        "input must be a string, a non-empty list of strings, a list of token ids or a list "
        "of lists of token ids"
    )


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shorten(vector: list[float], dims: Any) -> list[float]:
    if isinstance(dims, bool) or not isinstance(dims, int) or not 0 < dims <= len(vector):
        raise InvalidArgument(f"dimensions must be from 1 to {len(vector)}")
    head = vector[:dims]
    norm = sum(x * x for x in head) ** 0.5
    return [x / norm for x in head] if norm else head


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
