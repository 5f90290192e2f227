"""Ollama's API: generate, chat and embeddings here; the model listing and management routes
(tags, show, ps, copy, delete, pull) in ollama_models.py. NDJSON streams by default, one
object with `stream: false`; errors are `{"error": "..."}` with Ollama's statuses (a full
queue is 503 as in Ollama, not 429). Only translates; the core's LLM sessions and engines
work.

A request holds its model (an LLM session's lease) from the moment it is found until its last
chunk is sent, so a streaming model is never evicted or reaped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.core.llm import Generation, LLMService, Session
from modelyard.core.models import ModelService
from modelyard.core.tools import ToolRequest
from modelyard.errors import Code, InvalidArgument, ModelyardError
from modelyard.fronts import http_common
from modelyard.fronts.http_common import (
    HTTP_STATUS,
    HeldStream,
    json_response,
    parse_json,
    read_body,
    unexpected,
    until_disconnect,
)
from modelyard.fronts.ollama_output import Reply, Timings, loaded_reply, ndjson
from modelyard.fronts.ollama_schema import (
    Common,
    GenerateBody,
    read_chat,
    read_embed,
    read_generate,
)
from modelyard.spec.generation import Delta, SamplingParams

log = logging.getLogger("modelyard.ollama")

Handler = Callable[[Request], Awaitable[Response]]

#: The Ollama API level these routes implement (what `GET /api/version` reports).
OLLAMA_API_VERSION = "0.12.0"
#: Ollama's statuses: its only difference from the shared table is 503 for a full queue.
STATUS = {**HTTP_STATUS, Code.RESOURCE_EXHAUSTED: 503}
NDJSON = "application/x-ndjson"


def guard(handler: Handler) -> Handler:
    return http_common.guard(handler, http_common.error_body, STATUS)


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_body(request, limit) or b"{}")


class OllamaFront:
    def __init__(self, llm: LLMService, models: ModelService, max_request_bytes: int) -> None:
        self.llm = llm
        self.models = models
        self.max_request_bytes = max_request_bytes

    def routes(self) -> list[BaseRoute]:
        table: list[tuple[str, Handler, list[str]]] = [
            ("/", self.root, ["GET", "HEAD"]),
            ("/api/version", self.version, ["GET"]),
            ("/api/generate", self.generate, ["POST"]),
            ("/api/chat", self.chat, ["POST"]),
            ("/api/embed", self.embed, ["POST"]),
            ("/api/embeddings", self.embeddings, ["POST"]),
        ]
        return [Route(path, guard(handler), methods=methods) for path, handler, methods in table]

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        from modelyard import __version__

        return json_response({"version": OLLAMA_API_VERSION, "modelyard": __version__})

    # ---- generation ----------------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        timings = Timings()
        body = read_generate(await read_json(request, self.max_request_bytes))
        if not body.prompt and not body.context:
            return await self._load_only(body, chat=False)
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(
                self.llm.session(body.model, body.keep_alive_s)
            )
            timings.loaded()
            prompt = await self._generate_prompt(body, session)
            params = self._params(body, session, prompt)
            reply = Reply(body.asked, False, prompt, timings, body.params.logprobs is not None)
            return await self._respond(request, stack, session, body, params, reply)

    async def chat(self, request: Request) -> Response:
        timings = Timings()
        body = read_chat(await read_json(request, self.max_request_bytes))
        if not body.messages:
            return await self._load_only(body, chat=True)
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(
                self.llm.session(body.model, body.keep_alive_s)
            )
            timings.loaded()
            prompt = await session.chat(body.messages, body.params, tools=body.tools)
            params = self._params(body, session, prompt, body.tools)
            reply = Reply(body.asked, True, prompt, timings, body.params.logprobs is not None)
            return await self._respond(request, stack, session, body, params, reply)

    async def _load_only(self, body: Common, chat: bool) -> Response:
        """An empty prompt loads the model; with keep_alive 0 it unloads it."""
        if body.keep_alive_s == 0:
            await self.models.unload(body.model)
            return json_response(loaded_reply(body.asked, chat, "unload"))
        await self.models.acquire(body.model, keep_alive_s=body.keep_alive_s)
        return json_response(loaded_reply(body.asked, chat, "load"))

    async def _generate_prompt(self, body: GenerateBody, session: Session) -> list[int]:
        """The prompt's tokens: the model's chat template around the prompt (unless `raw`, or
        the model has no template of its own), after a previous reply's `context`."""
        text = body.prompt
        template = session.template
        if not body.raw and template is not None and not template.guessed:
            messages = [{"role": "system", "content": body.system}] if body.system else []
            messages.append({"role": "user", "content": body.prompt})
            text = session.chat_text(messages)
        tokens = await session.tokenize(text)
        if body.context:
            start = await session.tokenize("")  # BOS, when the model adds one: not mid-sequence
            if start and tokens[: len(start)] == start:
                tokens = tokens[len(start) :]
            tokens = body.context + tokens
        return tokens

    def _params(
        self, body: Common, session: Session, prompt: list[int], tools: ToolRequest | None = None
    ) -> SamplingParams:
        params = body.params
        session.constrain(params, body.structured, tools)
        if body.num_ctx is not None and body.num_ctx < session.n_ctx:
            room = body.num_ctx - len(prompt)
            if room < 1:
                raise InvalidArgument(
                    f"the prompt has {len(prompt)} tokens, more than num_ctx "
                    f"({body.num_ctx}) allows"
                )
            params.max_tokens = min(params.max_tokens or room, room)
        return params

    # ---- responding ----------------------------------------------------------------------------

    async def _respond(
        self,
        request: Request,
        stack: contextlib.AsyncExitStack,
        session: Session,
        body: Common,
        params: SamplingParams,
        reply: Reply,
    ) -> Response:
        """Start the generation; errors before the first token are HTTP statuses. A stream
        takes over `stack` (the session's lease, the generation) until its last line."""
        generation = session.generate([reply.prompt], [params])
        stack.push_async_callback(generation.aclose)
        _, first = await anext(generation)
        reply.timings.token()  # when the engine's token arrives, not when it is sent
        if body.stream:
            return HeldStream(_stream(reply, first, generation), stack.pop_all(), NDJSON)
        return await until_disconnect(request, _collect(reply, first, generation))

    # ---- embeddings ----------------------------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        timings = Timings()
        body = read_embed(await read_json(request, self.max_request_bytes))
        async with self.llm.session(body.model, body.keep_alive_s) as session:
            timings.loaded()
            vectors, tokens = await session.embed(body.texts) if body.texts else ([], 0)
        if body.dimensions is not None:
            vectors = [_shorten(v, body.dimensions) for v in vectors]
        fields = timings.fields(tokens, 0)
        return json_response(
            {
                "model": body.asked,
                "embeddings": vectors,
                "total_duration": fields["total_duration"],
                "load_duration": fields["load_duration"],
                "prompt_eval_count": tokens,
            }
        )

    async def embeddings(self, request: Request) -> Response:
        body = read_embed(await read_json(request, self.max_request_bytes), old=True)
        async with self.llm.session(body.model, body.keep_alive_s) as session:
            if not body.texts:
                return json_response({"embedding": []})
            vectors, _ = await session.embed(body.texts)
        return json_response({"embedding": vectors[0]})


# ---- helpers ----------------------------------------------------------------------------------


async def _stream(reply: Reply, first: Delta, rest: Generation) -> AsyncIterator[bytes]:
    try:
        chunk = reply.add(first)
        if chunk is not None:
            yield ndjson(chunk)
        async for _, delta in rest:
            reply.timings.token()
            chunk = reply.add(delta)
            if chunk is not None:
                yield ndjson(chunk)
        yield ndjson(reply.final())
    except ModelyardError as exc:
        yield ndjson(reply.failed(exc.message))
    except Exception as exc:
        yield ndjson(reply.failed(unexpected(exc, "an Ollama stream").message))


async def _collect(reply: Reply, first: Delta, rest: Generation) -> Response:
    reply.add(first)
    async for _, delta in rest:
        reply.timings.token()
        reply.add(delta)
    return json_response(reply.final(whole=True))


def _shorten(vector: list[float], dims: int) -> list[float]:
    if dims > len(vector):
        raise InvalidArgument(f"dimensions must be at most {len(vector)}")
    head = vector[:dims]
    norm = sum(x * x for x in head) ** 0.5
    return [x / norm for x in head] if norm else head
