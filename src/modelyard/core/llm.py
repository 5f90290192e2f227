"""The one LLM session API every text front calls (OpenAI, Ollama, and KServe v2 infer on a
text generator): hold a model, build its prompt (chat template, template stop strings),
tokenize, constrain the output (structured output, tool calls), generate on the model's
engine and read tool calls back out of the replies, embed. No web framework here.

    async with llm.session(name, keep_alive_s) as session:
        prompt = await session.chat(messages, params, tools=tools)
        session.constrain(params, structured, tools=tools)
        generation = session.generate([prompt], [params])
        index, first = await anext(generation)   # errors before the first token raise here

A session holds one version of the model from start to end (`ModelService.lease`): its
tokenizer, template and engine always belong together, and it is never unloaded under a
request. A `Generation` carries the deltas of all of a request's sequences through one queue;
closing it aborts whatever still runs and frees the engine's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np
import orjson

from modelyard.core import tool_prompt
from modelyard.core.chat import ChatTemplate
from modelyard.core.engine import Engine
from modelyard.core.models import ModelService, ServedModel
from modelyard.core.sampling import sampling_params
from modelyard.core.tool_calls import ToolCallReader
from modelyard.core.tools import ToolRequest
from modelyard.errors import Internal, InvalidArgument, ModelyardError
from modelyard.runtimes import Arrays, TextModel
from modelyard.spec.generation import (
    SAMPLING_PARAMETERS,
    TEXT_INPUT,
    TEXT_OUTPUT,
    Constraint,
    Delta,
    Finish,
    GenerationRequest,
    RegexOutput,
    SamplingParams,
    StructuredOutput,
    ToolCalling,
)

log = logging.getLogger("modelyard.llm")

#: Texts longer than this are tokenized on a worker thread rather than on the event loop.
_INLINE_TOKENIZE_CHARS = 8192
#: Model names that clients of one-model servers send: TGI's documented "tgi", and
#: huggingface_hub's "dummy" when its InferenceClient was given a server's URL. Unless a
#: model has that name, they stand for the server's stand-in (--tgi-model) or the one loaded
#: text generator.
STAND_INS = frozenset({"tgi", "dummy"})
#: What to change when a client sends another tokenizer's ids (langchain's OpenAIEmbeddings
#: sends tiktoken's by default).
_FOREIGN_IDS = (
    "; send the texts instead of token ids (langchain's OpenAIEmbeddings: "
    "check_embedding_ctx_length=False)"
)


class LLMService:
    def __init__(self, models: ModelService, executor: Executor, stand_in: str = "") -> None:
        """`stand_in`: the model the stand-in names (`STAND_INS`) mean ("": the one loaded
        text generator)."""
        self.models = models
        self.executor = executor
        self.stand_in = stand_in
        #: Generations running now, for `cut`.
        self.live: weakref.WeakSet[Generation] = weakref.WeakSet()

    @contextlib.asynccontextmanager
    async def session(self, name: str, keep_alive_s: float | None = None) -> AsyncIterator[Session]:
        """The text model `name`, loaded first in `ondemand` mode and held until the block
        ends (or until what the block hands its exit stack to ends)."""
        async with self.models.lease(name, keep_alive_s=keep_alive_s) as model:
            yield Session(model, self.executor, self.live)

    def cut(self, error: ModelyardError) -> int:
        """End every running generation now with `error` (the server is shutting down): each
        one's consumer gets it as the generation's error (a stream's front sends its final
        error event), even when the engine thread is stuck. Returns how many were cut."""
        cut = list(self.live)
        for generation in cut:
            generation.cut(error)
        return len(cut)

    def get(self, name: str) -> Session:
        """A loaded text model, for what needs no hold (listings, metadata)."""
        return Session(self.models.get(name), self.executor)

    def loaded(self) -> list[Session]:
        """Every loaded text model (its highest version)."""
        return [Session(m, self.executor) for m in self.models.latest() if m.text is not None]

    def name_or_only(self, name: Any) -> str:
        """`name`, or when a request leaves it out, the one loaded text model (vLLM's way), or
        the one that generates when embedding models are loaded beside it."""
        if isinstance(name, str) and name:
            return name
        if name is not None:
            raise InvalidArgument("model must be a model's name")
        loaded = self.loaded()
        generators = [s.name for s in loaded if s.model.generates]
        names = [s.name for s in loaded]
        if len(names) == 1 or len(generators) == 1:
            return names[0] if len(names) == 1 else generators[0]
        raise InvalidArgument(
            f"model is required: {len(names)} language models are loaded "
            f"({', '.join(names) or 'none'})"
        )

    def resolve(self, name: str) -> str:
        """`name`, or when `name` is a stand-in (`STAND_INS`) that no model is called, the
        server's stand-in model or the one loaded generator."""
        if name in STAND_INS and name not in self.models.entries:
            return self.stand_in or self.name_or_only(None)
        return name

    # ---- KServe v2 on a text generator -----------------------------------------------------

    async def infer(
        self, model: ServedModel, inputs: Arrays, parameters: Mapping[str, Any] | None = None
    ) -> Arrays:
        """The whole text for a KServe request (its model already leased); sampling options
        come from `sampling_parameters`, else from the request's parameters (as Triton's vLLM
        backend reads them)."""
        parts = []
        generation = _kserve_generation(model, self.executor, inputs, self.live, parameters)
        async with contextlib.aclosing(generation) as gen:
            async for _, delta in gen:
                parts.append(delta.text)
        return _text_output("".join(parts))

    async def infer_stream(
        self, model: ServedModel, inputs: Arrays, parameters: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[Arrays, None]:
        """One response per delta, for decoupled streaming (ModelStreamInfer)."""
        generation = _kserve_generation(model, self.executor, inputs, self.live, parameters)
        async with contextlib.aclosing(generation) as gen:
            async for _, delta in gen:
                if delta.text or delta.finish is not None:
                    yield _text_output(delta.text)


class Session:
    """What one request asks of one held text model."""

    def __init__(
        self,
        model: ServedModel,
        executor: Executor,
        live: weakref.WeakSet[Generation] | None = None,
    ) -> None:
        if model.text is None:
            raise InvalidArgument(
                f"model {model.name!r} is not a language model (runtime "
                f"{model.config.runtime}); use the KServe v2 API (/v2/models/.../infer) for it"
            )
        self.model = model
        self.text: TextModel = model.text
        self.name = model.name
        self.executor = executor
        self.live = live

    @property
    def n_ctx(self) -> int:
        return self.text.n_ctx

    @property
    def template(self) -> ChatTemplate | None:
        return self.model.template

    # ---- prompts ---------------------------------------------------------------------------

    def chat_text(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: ToolRequest | None = None,
        **extra: Any,
    ) -> str:
        """The prompt text the model's chat template makes of `messages` (and of the tools
        offered, in the template's own way or the generic one: core/tool_prompt.py)."""
        if tools is not None and self.model.engine is None:
            raise InvalidArgument(
                f"model {self.name!r} is an embedding model; it does not call tools"
            )
        template = self.model.template
        if template is None:
            raise InvalidArgument(f"model {self.name!r} has no chat template; use completions")
        messages, tool_extra = tool_prompt.prepare(template, messages, tools)
        return template.render(messages, add_generation_prompt, **{**extra, **tool_extra})

    async def chat(
        self,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        tools: ToolRequest | None = None,
        **extra: Any,
    ) -> list[int]:
        """The tokens of a chat prompt; the template's stop strings join `params.stop`."""
        tokens = await self.tokenize(self.chat_text(messages, tools=tools, **extra))
        template = self.model.template
        if template is not None and template.stop:
            params.stop = (*params.stop, *template.stop)
        return tokens

    async def tokenize(
        self, text: str, special: bool = True, add_special: bool = True
    ) -> list[int]:
        if len(text) <= _INLINE_TOKENIZE_CHARS:
            return self.text.tokenize(text, special, add_special)
        loop = asyncio.get_running_loop()
        work = functools.partial(self.text.tokenize, text, special, add_special)
        return await loop.run_in_executor(self.executor, work)

    def detokenize(self, tokens: list[int]) -> str:
        return self.text.detokenize(tokens)

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for as generated text shows it (special tokens as
        nothing)."""
        engine = self.model.engine
        if engine is None:
            return self.text.detokenize([token]).encode()
        return engine.backend.piece(token)

    def ends(self, token: int) -> bool:
        """Whether `token` ends generation (EOS, EOT): a special token."""
        engine = self.model.engine
        return engine is not None and engine.backend.is_end(token)

    def pieces(self, tokens: list[int]) -> str:
        """Token ids as text, the way `piece` renders each (offsets into it add up); ids are
        checked first, as nothing outside the vocabulary may reach the model's tables."""
        self.check_tokens(tokens)
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    def constrain(
        self,
        params: SamplingParams,
        structured: StructuredOutput | RegexOutput | None,
        tools: ToolRequest | None = None,
    ) -> None:
        """Make the output follow `structured`, and call `tools` as they ask (checked now:
        a 400 before any token). The replies of a generation with tools are read into text
        and tool calls."""
        constraint: Constraint | None = structured
        if tools is not None:
            if isinstance(structured, RegexOutput):
                raise InvalidArgument("a regex output cannot be combined with tools")
            constraint = tools.constraint(tool_prompt.SYNTAX, structured)
        if constraint is not None:
            self.text.check_structured(constraint)
            params.structured = constraint

    # ---- generation ------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: Iterable[SamplingParams]) -> Generation:
        """Generate a sequence for each (prompt, params) pair side by side."""
        engine = self.model.engine
        if engine is None:
            raise InvalidArgument(
                f"model {self.name!r} is an embedding model; it does not generate"
            )
        for prompt in prompts:  # a bad id would fail the decode step every sequence shares
            self.check_tokens(prompt)
        requests = [
            GenerationRequest(os.urandom(12).hex(), prompt, p)
            for prompt, p in zip(prompts, params, strict=True)
        ]
        generation = Generation(engine, self.name, requests)
        if self.live is not None:
            self.live.add(generation)
        return generation

    # ---- tokens ----------------------------------------------------------------------------

    def tokenizer_info(self) -> dict[str, Any]:
        """What a remote tokenizer needs to know (vLLM's `/tokenizer_info`)."""
        source = self.text.template_source()
        template = self.model.template
        return {
            "tokenizer_class": f"{self.model.config.runtime}-tokenizer",
            "bos_token": source.bos_token or None if source else None,
            "eos_token": source.eos_token or None if source else None,
            "pad_token": None,
            "chat_template": template.source if template is not None else None,
            "model_max_length": self.n_ctx,
            "vocab_size": self.text.vocab_size,
        }

    def check_tokens(self, tokens: list[int], hint: str = "") -> None:
        """Refuse token ids outside the model's vocabulary (400, not a failed decode)."""
        size = self.text.vocab_size
        if not size or not tokens or (min(tokens) >= 0 and max(tokens) < size):
            return
        bad = next(t for t in tokens if not 0 <= t < size)
        raise InvalidArgument(
            f"token id {bad} is not one of model {self.name!r}'s (its vocabulary has "
            f"{size} tokens, ids 0 to {size - 1}){hint}"
        )

    # ---- embeddings ------------------------------------------------------------------------

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """Embeddings of texts, or of inputs given as the model's own token ids."""
        if not self.text.embedding:
            raise InvalidArgument(f"model {self.name!r} does not serve embeddings")
        texts = [t for t in inputs if isinstance(t, str)]
        ids = [t for t in inputs if isinstance(t, list)]
        if texts and ids:
            raise InvalidArgument("inputs must be all texts or all token id lists, not both")
        for tokens in ids:
            self.check_tokens(tokens, _FOREIGN_IDS)
        work: Any = functools.partial(self.text.embed_tokens, ids)
        if texts:
            work = functools.partial(self.text.embed, texts)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, work)
        except ModelyardError:
            raise
        except Exception as exc:
            log.exception("embedding with %s failed", self.name)
            raise Internal(f"model {self.name!r} failed: {exc!r}") from exc


class Generation:
    """The deltas of a request's sequences as the engine produces them, each tagged with its
    sequence's index; an engine error raises from `__anext__`. `aclose` aborts the rest."""

    def __init__(self, engine: Engine, name: str, requests: list[GenerationRequest]) -> None:
        self.engine = engine
        self.name = name
        self.requests = requests
        self._queue: asyncio.Queue[tuple[int, Delta]] = asyncio.Queue()
        self._running = set(range(len(requests)))
        self._readers = {
            i: ToolCallReader(r.params.structured.syntax)
            for i, r in enumerate(requests)
            if isinstance(r.params.structured, ToolCalling) and r.params.structured.tools
        }
        loop = asyncio.get_running_loop()
        try:
            for index, request in enumerate(requests):
                sink = functools.partial(_deliver, loop, self._queue.put_nowait, index)
                engine.submit(request, sink)
        except BaseException:
            self._abort()
            raise

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> tuple[int, Delta]:
        if not self._running:
            raise StopAsyncIteration
        index, delta = await self._queue.get()
        if delta.error is not None:
            self._running.discard(index)
            raise _translate(delta.error, self.name)
        if delta.finish is not None:
            self._running.discard(index)
        reader = self._readers.get(index)
        return index, (delta if reader is None else reader.read(delta))

    async def aclose(self) -> None:
        self._abort()

    def cut(self, error: ModelyardError) -> None:
        """End the sequences still running with `error`, without waiting for the engine."""
        for index in self._running:
            delta = Delta("", [], 0, 0, finish=Finish.ERROR, error=error)
            self._queue.put_nowait((index, delta))

    def _abort(self) -> None:
        for index in self._running:
            self.engine.abort(self.requests[index].id)
        self._running = set()


def _deliver(loop: asyncio.AbstractEventLoop, put: Any, index: int, delta: Delta) -> None:
    """The engine thread's sink: hand the delta over to the event loop."""
    loop.call_soon_threadsafe(put, (index, delta))


async def _kserve_generation(
    model: ServedModel,
    executor: Executor,
    inputs: Arrays,
    live: weakref.WeakSet[Generation],
    parameters: Mapping[str, Any] | None = None,
) -> AsyncGenerator[tuple[int, Delta], None]:
    """A KServe request's generation: `text_input`, and `sampling_parameters` as JSON (else
    the request's parameters)."""
    session = Session(model, executor, live)
    options: Any = parameters or {}
    if SAMPLING_PARAMETERS in inputs:
        raw = _text(inputs[SAMPLING_PARAMETERS].reshape(-1)[0])
        try:
            options = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"sampling_parameters is not JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise InvalidArgument("sampling_parameters must be a JSON object")
    prompt = await session.tokenize(_text(inputs[TEXT_INPUT].reshape(-1)[0]))
    generation = session.generate([prompt], [sampling_params(options)])
    try:
        async for item in generation:
            yield item
    finally:
        await generation.aclose()


def _text_output(text: str) -> Arrays:
    return {TEXT_OUTPUT: np.array([text.encode()], dtype=object)}


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _translate(error: Exception, name: str) -> ModelyardError:
    if isinstance(error, ModelyardError):
        return error
    log.error("generation with %s failed: %r", name, error, exc_info=error)
    return Internal(f"model {name!r} failed: {error!r}")
