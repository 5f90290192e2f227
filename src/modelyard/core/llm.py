"""The protocol-neutral LLM plane every text front (OpenAI, Ollama, KServe generate) calls:
find a language model, build its prompt, stream a generation from its engine into asyncio,
tokenize, embed. No web framework in here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import Any

from modelyard.core.engine import Engine, NullObserver
from modelyard.core.textmodel import TextModel
from modelyard.errors import Internal, InvalidArgument, ModelyardError
from modelyard.repository.manager import ModelRepository, ModelVersion
from modelyard.spec.generation import Delta, GenerationRequest, SamplingParams

log = logging.getLogger("modelyard.llm")

#: Texts longer than this are tokenized on a worker thread rather than on the event loop.
_INLINE_TOKENIZE_CHARS = 8192


class LLMPlane:
    def __init__(
        self, repository: ModelRepository, executor: Executor, metrics: Any = None
    ) -> None:
        self.repository = repository
        self.executor = executor
        self.metrics = metrics

    # ---- models ----------------------------------------------------------------------------

    def get(self, name: str) -> tuple[ModelVersion, TextModel]:
        """The loaded language model called `name` (NotFound / InvalidArgument otherwise)."""
        return self._text_model(self.repository.get(name))

    async def acquire(
        self, name: str, keep_alive_s: float | None = None
    ) -> tuple[ModelVersion, TextModel]:
        """The language model called `name`, loaded first when the repository loads models on
        demand; `keep_alive_s` (a request's keep-alive) is passed on to the repository. Call
        `version.enter()` before the next await to keep it loaded while in use."""
        return self._text_model(await self.repository.acquire(name, keep_alive_s=keep_alive_s))

    @contextlib.asynccontextmanager
    async def hold(
        self, name: str, keep_alive_s: float | None = None
    ) -> AsyncIterator[tuple[ModelVersion, TextModel]]:
        """`acquire`, and keep the model loaded (never evicted or unloaded) inside the block:
        for work such as tokenizing on a worker thread before a generation starts."""
        version, model = await self.acquire(name, keep_alive_s)
        version.enter()
        try:
            yield version, model
        finally:
            version.leave()

    def _text_model(self, version: ModelVersion) -> tuple[ModelVersion, TextModel]:
        name = version.name
        runtime = version.runtime
        if not isinstance(runtime, TextModel):
            raise InvalidArgument(
                f"model {name!r} is not a language model (runtime {version.config.runtime}); "
                "use the KServe v2 API (/v2/models/.../infer) for it"
            )
        return version, runtime

    def models(self) -> list[tuple[ModelVersion, TextModel]]:
        """Every loaded language model (highest version of each)."""
        out = []
        for name in sorted(self.repository.entries):
            try:
                out.append(self.get(name))
            except ModelyardError:
                continue
        return out

    def engine(self, name: str) -> tuple[ModelVersion, TextModel, Engine]:
        version, model = self.get(name)
        if model.engine is None:
            raise InvalidArgument(f"model {name!r} is an embedding model; it does not generate")
        if self.metrics is not None and isinstance(model.engine.observer, NullObserver):
            model.engine.observer = self.metrics.observer(name)
            self.metrics.watch(name, model.engine)
        return version, model, model.engine

    # ---- prompts ---------------------------------------------------------------------------

    async def tokenize(self, model: TextModel, text: str, special: bool = True) -> list[int]:
        if len(text) <= _INLINE_TOKENIZE_CHARS:
            return model.tokenize(text, special)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, model.tokenize, text, special)

    def chat_prompt(
        self, name: str, model: TextModel, messages: list[dict[str, Any]], **extra: Any
    ) -> str:
        if model.template is None:
            raise InvalidArgument(f"model {name!r} has no chat template; use completions")
        return model.template.render(messages, **extra)

    # ---- generation ------------------------------------------------------------------------

    async def generate(
        self, name: str, prompt: list[int], params: SamplingParams, request_id: str | None = None
    ) -> AsyncIterator[Delta]:
        """The deltas of one generation as the engine produces them; closing the iterator
        early (a client that went away) aborts the request and frees its slot."""
        version, _, engine = self.engine(name)
        request = GenerationRequest(request_id or os.urandom(12).hex(), prompt, params)
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[Delta] = asyncio.Queue()

        def sink(delta: Delta) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, delta)

        version.enter()
        try:
            engine.submit(request, sink)
            while True:
                delta = await deltas.get()
                if delta.error is not None:
                    raise _translate(delta.error, name)
                yield delta
                if delta.finish is not None:
                    return
        finally:
            engine.abort(request.id)
            version.leave()

    # ---- embeddings ------------------------------------------------------------------------

    async def embed(
        self, name: str, texts: list[str], keep_alive_s: float | None = None
    ) -> tuple[list[list[float]], int]:
        version, model = await self.acquire(name, keep_alive_s)
        if not model.embedding:
            raise InvalidArgument(f"model {name!r} does not serve embeddings")
        loop = asyncio.get_running_loop()
        version.enter()
        try:
            return await loop.run_in_executor(self.executor, model.embed, texts)
        except ModelyardError:
            raise
        except Exception as exc:
            log.exception("embedding with %s failed", name)
            raise Internal(f"model {name!r} failed: {exc!r}") from exc
        finally:
            version.leave()


def _translate(error: Exception, name: str) -> ModelyardError:
    if isinstance(error, ModelyardError):
        return error
    log.error("generation with %s failed: %r", name, error)
    return Internal(f"model {name!r} failed: {error!r}")
