"""Ollama's API: generate, chat and embeddings here; the model listing and management routes
(tags, show, ps, copy, delete, pull) in ollama_models.py. NDJSON streams by default, one
object with `stream: false`; errors are `{"error": "..."}` with Ollama's statuses (a full
queue is 503 as in Ollama, not 429). Only translates; the LLM plane and its engines work.

A request holds its model (`ModelVersion.enter` .. `leave`) from the moment it is acquired
until its last chunk is sent, so a streaming model is never evicted or reaped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from modelyard.core.llm import LLMPlane
from modelyard.core.textmodel import TextModel
from modelyard.errors import Code, InvalidArgument, ModelyardError
from modelyard.fronts import http_common
from modelyard.fronts.http_common import (
    HTTP_STATUS,
    json_response,
    parse_json,
    read_body,
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
from modelyard.repository.manager import ModelVersion
from modelyard.spec.generation import Delta, SamplingParams

log = logging.getLogger("modelyard.ollama")

Handler = Callable[[Request], Awaitable[Response]]
Deltas = AsyncGenerator[Delta, None]

#: The Ollama API level these routes implement (what `GET /api/version` reports).
OLLAMA_API_VERSION = "0.12.0"
#: Ollama's statuses: its only difference from the shared table is 503 for a full queue.
STATUS = {**HTTP_STATUS, Code.RESOURCE_EXHAUSTED: 503}
NDJSON = "application/x-ndjson"


def error_response(exc: ModelyardError) -> Response:
    return json_response({"error": exc.message}, STATUS[exc.code])


def guard(handler: Handler) -> Handler:
    return http_common.guard(handler, error_response)


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_body(request, limit) or b"{}")


class OllamaFront:
    def __init__(self, plane: LLMPlane, max_request_bytes: int) -> None:
        self.plane = plane
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
        version, model = await self._hold(body, timings)
        try:
            prompt = await self._generate_prompt(body, model)
            params = self._params(body, model, prompt)
        except BaseException:
            version.leave()
            raise
        reply = Reply(body.asked, False, prompt, timings, body.params.logprobs is not None)
        return await self._respond(request, body, version, params, reply)

    async def chat(self, request: Request) -> Response:
        timings = Timings()
        body = read_chat(await read_json(request, self.max_request_bytes))
        if not body.messages:
            return await self._load_only(body, chat=True)
        version, model = await self._hold(body, timings)
        try:
            text = self.plane.chat_prompt(body.model, model, body.messages)
            prompt = await self.plane.tokenize(model, text)
            params = self._params(body, model, prompt)
            if model.template is not None:
                params.stop = (*params.stop, *model.template.stop)
        except BaseException:
            version.leave()
            raise
        reply = Reply(body.asked, True, prompt, timings, body.params.logprobs is not None)
        return await self._respond(request, body, version, params, reply)

    async def _hold(self, body: Common, timings: Timings) -> tuple[ModelVersion, TextModel]:
        """The model, loaded if need be and marked in use (the caller must `leave` it)."""
        version, model = await self.plane.acquire(body.model, body.keep_alive_s)
        version.enter()
        timings.loaded()
        return version, model

    async def _load_only(self, body: Common, chat: bool) -> Response:
        """An empty prompt loads the model; with keep_alive 0 it unloads it."""
        if body.keep_alive_s == 0:
            await self.plane.repository.unload(body.model)
            return json_response(loaded_reply(body.asked, chat, "unload"))
        await self.plane.repository.acquire(body.model, keep_alive_s=body.keep_alive_s)
        return json_response(loaded_reply(body.asked, chat, "load"))

    async def _generate_prompt(self, body: GenerateBody, model: TextModel) -> list[int]:
        """The prompt's tokens: the model's chat template around the prompt (unless `raw`, or
        the model has no template of its own), after a previous reply's `context`."""
        text = body.prompt
        if not body.raw and _has_own_template(model):
            messages = [{"role": "system", "content": body.system}] if body.system else []
            messages.append({"role": "user", "content": body.prompt})
            text = self.plane.chat_prompt(body.model, model, messages)
        tokens = await self.plane.tokenize(model, text)
        if body.context:
            start = model.tokenize("")  # BOS, when the model adds one: not mid-sequence
            if start and tokens[: len(start)] == start:
                tokens = tokens[len(start) :]
            tokens = body.context + tokens
        return tokens

    def _params(self, body: Common, model: TextModel, prompt: list[int]) -> SamplingParams:
        params = body.params
        if body.structured is not None:
            params.grammar = model.grammar(*body.structured)
        if body.num_ctx is not None and body.num_ctx < model.n_ctx:
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
        body: Common,
        version: ModelVersion,
        params: SamplingParams,
        reply: Reply,
    ) -> Response:
        deltas = self._deltas(body.model, version, reply.prompt, params, reply.timings)
        try:
            first = await anext(deltas)  # errors before the first token are HTTP statuses
        except BaseException:
            await deltas.aclose()
            raise
        if body.stream:
            return StreamingResponse(_stream(reply, first, deltas), media_type=NDJSON)
        return await until_disconnect(request, _collect(reply, first, deltas))

    async def _deltas(
        self,
        name: str,
        version: ModelVersion,
        prompt: list[int],
        params: SamplingParams,
        timings: Timings,
    ) -> Deltas:
        generation = self.plane.generate(name, prompt, params)
        try:
            async for delta in generation:
                timings.token()  # when the engine's token arrives, not when it is sent
                yield delta
        finally:
            await generation.aclose()  # type: ignore[attr-defined]
            version.leave()

    # ---- embeddings ----------------------------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        timings = Timings()
        body = read_embed(await read_json(request, self.max_request_bytes))
        await self.plane.acquire(body.model, body.keep_alive_s)
        timings.loaded()
        vectors, tokens = await self.plane.embed(body.model, body.texts) if body.texts else ([], 0)
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
        if not body.texts:
            await self.plane.acquire(body.model, body.keep_alive_s)
            return json_response({"embedding": []})
        vectors, _ = await self.plane.embed(body.model, body.texts, body.keep_alive_s)
        return json_response({"embedding": vectors[0]})


# ---- helpers ----------------------------------------------------------------------------------


async def _stream(reply: Reply, first: Delta, rest: Deltas) -> AsyncIterator[bytes]:
    try:
        chunk = reply.add(first)
        if chunk is not None:
            yield ndjson(chunk)
        async for delta in rest:
            chunk = reply.add(delta)
            if chunk is not None:
                yield ndjson(chunk)
        yield ndjson(reply.final())
    except ModelyardError as exc:
        yield ndjson({"error": exc.message})
    finally:
        await rest.aclose()


async def _collect(reply: Reply, first: Delta, rest: Deltas) -> Response:
    try:
        reply.add(first)
        async for delta in rest:
            reply.add(delta)
    finally:
        await rest.aclose()
    return json_response(reply.final(whole=True))


def _has_own_template(model: TextModel) -> bool:
    """Whether the model's chat template is its own (from its file or config) rather than a
    guess for a base model; a model without one reads the prompt as it is (Ollama's
    `{{ .Prompt }}`)."""
    template = model.template
    return template is not None and "none in the model file" not in template.origin


def _shorten(vector: list[float], dims: int) -> list[float]:
    if dims > len(vector):
        raise InvalidArgument(f"dimensions must be at most {len(vector)}")
    head = vector[:dims]
    norm = sum(x * x for x in head) ** 0.5
    return [x / norm for x in head] if norm else head
