"""Hugging Face text-generation-inference's API: `/generate`, `/generate_stream`, TGI's compat
route `POST /` (streamed or not by `stream`; an embedding request there or at TEI's
`/embed` embeds), `/info` and TGI's `/tokenize`. Only translates; the core's LLM sessions do
the work. Every error is TGI's `{"error", "error_type"}` with TGI's statuses (422 validation,
424 generation, 429 overloaded).

TGI serves one model; modelyard may serve several. A request's model is the one its body
names (`model`), else the one the `X-Modelyard-Model` header names, else the server's
`--tgi-model`, else the one loaded text generator (the one embedding model for embeddings);
with several, the request must name one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard import __version__
from modelyard.core.llm import Generation, LLMService, Session
from modelyard.errors import Code, InvalidArgument, ModelyardError
from modelyard.fronts.http_common import (
    HTTP_STATUS,
    HeldStream,
    guard,
    json_response,
    parse_json,
    read_body,
    replayed,
    unexpected,
    until_disconnect,
)
from modelyard.fronts.tgi_output import Sequence, Vocabulary
from modelyard.fronts.tgi_schema import (
    MAX_BEST_OF,
    MAX_STOP_SEQUENCES,
    MAX_TOP_N_TOKENS,
    GenerateBody,
    read_generate,
)
from modelyard.spec.generation import Delta

Handler = Callable[[Request], Awaitable[Response]]

#: The header that names the model when a client cannot put `model` in the body.
MODEL_HEADER = "X-Modelyard-Model"

#: The one table from protocol-neutral codes to TGI's statuses, and TGI's error types.
TGI_STATUS = {
    **HTTP_STATUS,
    Code.INVALID_ARGUMENT: 422,
    Code.FAILED_PRECONDITION: 422,
    Code.INTERNAL: 424,
}
_ERROR_TYPES = {
    Code.INVALID_ARGUMENT: "validation",
    Code.FAILED_PRECONDITION: "validation",
    Code.PAYLOAD_TOO_LARGE: "validation",
    Code.UNAUTHENTICATED: "authentication",
    Code.NOT_FOUND: "not_found",
    Code.UNAVAILABLE: "unavailable",
    Code.RESOURCE_EXHAUSTED: "overloaded",
    Code.DEADLINE_EXCEEDED: "timeout",
    Code.INTERNAL: "generation",
}
#: `parameters` only an embedding request has (huggingface_hub's feature_extraction, TEI's
#: /embed); its `truncate` is true/false where a generation's is a number.
_EMBEDDING_FIELDS = frozenset(
    {"normalize", "prompt_name", "truncation_direction", "dimensions", "encoding_format"}
)


def error_body(exc: ModelyardError) -> dict[str, str]:
    return {"error": exc.message, "error_type": _ERROR_TYPES[exc.code]}


class TGIFront:
    def __init__(self, llm: LLMService, max_request_bytes: int, tokenize_fallback: Handler) -> None:
        """`tokenize_fallback` answers `/tokenize` requests that are not TGI's (no
        `inputs`): vLLM's, from the OpenAI front."""
        self.llm = llm
        self.max_request_bytes = max_request_bytes
        self.tokenize_fallback = tokenize_fallback

    def routes(self) -> list[BaseRoute]:
        table: list[tuple[str, Handler, str]] = [
            ("/generate", self.generate, "POST"),
            ("/generate_stream", self.generate_stream, "POST"),
            ("/", self.compat, "POST"),
            ("/embed", self.embed, "POST"),
            ("/info", self.info, "GET"),
            ("/tokenize", self.tokenize, "POST"),
        ]
        return [
            Route(path, guard(handler, error_body, TGI_STATUS), methods=[method])
            for path, handler, method in table
        ]

    # ---- generation --------------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        return await self._generate(request, await self._json(request), False)

    async def generate_stream(self, request: Request) -> Response:
        return await self._generate(request, await self._json(request), True)

    async def compat(self, request: Request) -> Response:
        """TGI's `POST /`: generation (an answer wrapped in a list, or a stream), or an
        embedding when the body or the model says so."""
        body = await self._json(request)
        if self._embeds(request, body):
            return await self._embed(request, body)
        return await self._generate(request, body, None)

    async def _generate(self, request: Request, raw: Any, stream: bool | None) -> Response:
        body = read_generate(raw, stream)
        name = self._model(request, body.model, embedding=False)
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(self.llm.session(name))
            prompt = await session.tokenize(body.inputs)
            if body.truncate is not None:
                prompt = prompt[-body.truncate :]
            _check_length(session, prompt, body)
            session.constrain(body.params, body.grammar)
            generation = session.generate(
                [prompt] * len(body.seeds),
                [dataclasses.replace(body.params, seed=seed) for seed in body.seeds],
            )
            stack.push_async_callback(generation.aclose)
            first = await anext(generation)
            vocabulary = _vocabulary(session)
            sequences = [Sequence(vocabulary, prompt, seed) for seed in body.seeds]
            if not body.stream:
                work = _collect(sequences, first, generation, body, wrap=stream is None)
                return await until_disconnect(request, work)
            return HeldStream(
                _events(sequences[0], first, generation, body),
                stack.pop_all(),
                "text/event-stream",
                {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

    # ---- embeddings --------------------------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        """TEI's `/embed`: `inputs` (a text or texts) -> one vector per text."""
        return await self._embed(request, await self._json(request))

    def _embeds(self, request: Request, body: dict[str, Any]) -> bool:
        """Whether a `POST /` body asks for embeddings: a list of inputs, embedding
        parameters, or a model (named, or the only one loaded) that only embeds."""
        if "stream" in body:
            return False
        parameters = body.get("parameters")
        # huggingface_hub sends them at the top level, TEI's clients in `parameters`
        options = {**(parameters if isinstance(parameters, dict) else {}), **body}
        if (
            isinstance(body.get("inputs"), list)
            or bool(set(options) & _EMBEDDING_FIELDS)
            or isinstance(options.get("truncate"), bool)
        ):
            return True
        named = body.get("model") or request.headers.get(MODEL_HEADER)
        if isinstance(named, str) and named:
            with contextlib.suppress(ModelyardError):
                return not self.llm.get(self.llm.resolve(named)).model.generates
            return False
        loaded = self.llm.loaded()
        return bool(loaded) and not any(s.model.generates for s in loaded)

    async def _embed(self, request: Request, body: dict[str, Any]) -> Response:
        texts = body.get("inputs")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidArgument("`inputs` must be a text or a non-empty list of texts")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidArgument("`parameters` must be an object")
        _check_embedding({**parameters, **body})
        name = self._model(request, body.get("model"), embedding=True)
        async with self.llm.session(name) as session:
            vectors, _ = await session.embed(texts)
        return json_response([_unit(v) for v in vectors])

    # ---- model metadata and tokens -----------------------------------------------------------

    async def info(self, request: Request) -> Response:
        """TGI's `/info` for the model `?model=` names (or the header, or the only one)."""
        name = self._model(request, request.query_params.get("model"), embedding=False)
        session = self.llm.get(name)
        config = session.model.config
        return json_response(
            {
                "model_id": session.name,
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": config.instance_count,
                "max_best_of": MAX_BEST_OF,
                "max_stop_sequences": MAX_STOP_SEQUENCES,
                "max_input_tokens": session.n_ctx - 1,
                "max_total_tokens": session.n_ctx,
                "max_top_n_tokens": MAX_TOP_N_TOKENS,
                "validation_workers": 1,
                "max_client_batch_size": 1,
                "router": "modelyard",
                "version": __version__,
                "sha": None,
                "docker_label": None,
            }
        )

    async def tokenize(self, request: Request) -> Response:
        """TGI's `/tokenize` (`{"inputs"}` -> `[{id, text, start, stop}]`, character offsets
        into the tokens' text); any other body is vLLM's, for the OpenAI front."""
        data = await read_body(request, self.max_request_bytes)
        body = parse_json(data)
        if not isinstance(body, dict) or "inputs" not in body:
            return await self.tokenize_fallback(replayed(request, data))
        inputs = body.get("inputs")
        if not isinstance(inputs, str) or not inputs:
            raise InvalidArgument("`inputs` must be a non-empty string")
        name = self._model(request, body.get("model"), embedding=False)
        async with self.llm.session(name) as session:
            tokens = await session.tokenize(inputs)
            out, start = [], 0
            for token in tokens:
                text = session.piece(token).decode("utf-8", "replace")
                out.append({"id": token, "text": text, "start": start, "stop": start + len(text)})
                start += len(text)
        return json_response(out)

    # ---- helpers -----------------------------------------------------------------------------

    def _model(self, request: Request, named: Any, embedding: bool) -> str:
        """The model a request is for (see the module's docstring)."""
        if named is None:
            named = request.headers.get(MODEL_HEADER)
        if isinstance(named, str) and named:
            return self.llm.resolve(named)
        if named is not None:
            raise InvalidArgument("`model` must be a model's name")
        if self.llm.stand_in and not embedding:  # --tgi-model
            return self.llm.stand_in
        kind = "embedding model" if embedding else "text generator"
        loaded = self.llm.loaded()
        names = [s.name for s in loaded if (s.text.embedding if embedding else s.model.generates)]
        if len(names) == 1:
            return names[0]
        if not names:
            raise InvalidArgument(f"no {kind} is loaded")
        raise InvalidArgument(
            f"{len(names)} {kind}s are loaded ({', '.join(names)}); name one with `model` "
            f"in the body or the {MODEL_HEADER} header, or start the server with --tgi-model"
        )

    async def _json(self, request: Request) -> Any:
        body = parse_json(await read_body(request, self.max_request_bytes))
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object with `inputs`")
        return body


def _check_embedding(options: dict[str, Any]) -> None:
    """TEI's embedding options: what modelyard does (unit vectors of floats, no truncation,
    no prompts) passes; anything else is refused rather than ignored."""
    refusals = {
        "normalize": (options.get("normalize") is False, "the vectors are normalized"),
        "truncate": (options.get("truncate") is True, "shorten the inputs instead"),
        "prompt_name": (options.get("prompt_name") is not None, "send the prompt in the text"),
        "dimensions": (options.get("dimensions") is not None, "use /v1/embeddings for it"),
        "encoding_format": (
            options.get("encoding_format") not in (None, "float"),
            "the vectors are JSON floats",
        ),
    }
    for name, (refused, why) in refusals.items():
        if refused:
            raise InvalidArgument(f"`{name}` {options[name]!r} is not supported: {why}")


def _check_length(session: Session, prompt: list[int], body: GenerateBody) -> None:
    """TGI's limits: the prompt and the tokens asked for must fit in the context."""
    limit = session.n_ctx
    if len(prompt) >= limit:
        raise InvalidArgument(
            f"`inputs` must have less than {limit} tokens. Given: {len(prompt)}; "
            "shorten it or set `truncate`"
        )
    wanted = body.params.max_tokens
    if wanted is not None and len(prompt) + wanted > limit:
        raise InvalidArgument(
            f"`inputs` tokens + `max_new_tokens` must be <= {limit}. Given: {len(prompt)} "
            f"`inputs` tokens and {wanted} `max_new_tokens`"
        )


def _vocabulary(session: Session) -> Vocabulary:
    return lambda token: (session.piece(token), session.ends(token))


async def _collect(
    sequences: list[Sequence],
    first: tuple[int, Delta],
    rest: Generation,
    body: GenerateBody,
    wrap: bool,
) -> Response:
    sequences[first[0]].add(first[1])
    async for index, delta in rest:
        sequences[index].add(delta)
    best = max(sequences, key=lambda s: s.logprob_sum)
    prefix = body.inputs if body.return_full_text else ""
    out: dict[str, Any] = {"generated_text": prefix + best.generated_text}
    if body.details or body.decoder_input_details:
        top, prefill = body.top_n_tokens > 0, body.decoder_input_details
        details = best.details(prefill, top)
        if len(sequences) > 1:
            details["best_of_sequences"] = [
                {"generated_text": prefix + s.generated_text, **s.details(prefill, top)}
                for s in sequences
                if s is not best
            ]
        out["details"] = details
    headers = {
        "x-prompt-tokens": str(best.prompt_tokens),
        "x-generated-tokens": str(len(best.tokens)),
    }
    return json_response([out] if wrap else out, headers=headers)


async def _events(
    sequence: Sequence, first: tuple[int, Delta], rest: Generation, body: GenerateBody
) -> AsyncIterator[bytes]:
    """One event per token; the last one carries the whole text (and `details` when asked).
    Each token's event waits for the next delta, which says whether it was the last."""
    held: dict[str, Any] | None = None
    try:
        async for delta in _deltas(first, rest):
            for token in sequence.add(delta):
                if held is not None:
                    yield _event(held)
                held = {"index": len(sequence.tokens), "token": token}
                if body.top_n_tokens:
                    held["top_tokens"] = sequence.top_tokens[-1] if sequence.top_tokens else []
                held.update(generated_text=None, details=None)
            if delta.finish is not None:
                if held is None:  # finished before any token: an empty last token
                    held = {"index": 1, "token": _NO_TOKEN, "details": None}
                held["generated_text"] = (
                    body.inputs if body.return_full_text else ""
                ) + sequence.generated_text
                if body.details:
                    held["details"] = sequence.stream_details()
                yield _event(held)
                return
    except ModelyardError as exc:
        yield _event(error_body(exc))
    except Exception as exc:
        yield _event(error_body(unexpected(exc, "a TGI stream")))


_NO_TOKEN = {"id": 0, "text": "", "logprob": None, "special": True}


async def _deltas(first: tuple[int, Delta], rest: Generation) -> AsyncIterator[Delta]:
    yield first[1]
    async for _, delta in rest:
        yield delta


def _event(payload: dict[str, Any]) -> bytes:
    return b"data:" + orjson.dumps(payload) + b"\n\n"


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector
