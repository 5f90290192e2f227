"""GGUF language models through llama.cpp (llama-cpp-python's low-level API; extra `[llm]`).

A bare `NAME.gguf` or a folder with `model.yaml` (`runtime: llamacpp`) becomes a text
generator: this runtime offers the core's continuous-batching engine a `Backend` over one
llama.cpp context, a tokenizer and the file's chat template. Embedding models (a pooling type
in the GGUF, or `embedding: true`) serve embeddings. `parameters` it reads (all optional; the
engine's own, `max_queue`, `prefix_cache` and `chat_template`, are read by the core):

    n_ctx          tokens one sequence may hold (default: min(4096, the model's context))
    n_seq_max      sequences decoded together (default 8)
    kv_size        tokens the KV cache holds for all sequences together (default n_ctx x
                   n_seq_max; at least n_ctx): sequences draw cells from one pool, so many
                   slots need not each reserve a whole context
    n_batch        tokens per decode step (default 512); n_ubatch (default n_batch)
    n_threads      CPU threads (default: all cores); n_threads_batch (default n_threads)
    swa_full       keep the full sliding-window cache (better prefix reuse, more memory)
    embedding      serve embeddings (true/false); pooling: mean, cls, last
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.errors import Internal, InvalidArgument, ModelLoadError
from modelyard.runtimes.base import (
    Arrays,
    Runtime,
    Signature,
    TemplateSource,
    TextModel,
    warn_unknown_parameters,
)
from modelyard.runtimes.llamacpp_backend import LlamaBackend
from modelyard.runtimes.llamacpp_embed import Embedder
from modelyard.runtimes.llamacpp_grammar import check_tool, gbnf
from modelyard.runtimes.llamacpp_lib import lc
from modelyard.spec.config import ModelConfig
from modelyard.spec.generation import (
    Backend,
    Constraint,
    ToolCalling,
    embedding_signature,
    generation_signature,
)
from modelyard.threads import LLAMA_CPP_LOCK

log = logging.getLogger("modelyard.llamacpp")

_POOLING = {
    "none": lc.LLAMA_POOLING_TYPE_NONE,
    "mean": lc.LLAMA_POOLING_TYPE_MEAN,
    "cls": lc.LLAMA_POOLING_TYPE_CLS,
    "last": lc.LLAMA_POOLING_TYPE_LAST,
}
_OWN_PARAMETERS = {
    "n_ctx",
    "n_seq_max",
    "kv_size",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "n_threads_batch",
    "swa_full",
    "embedding",
    "pooling",
}


@dataclass
class LlamaSettings:
    n_ctx: int = 0
    n_seq_max: int = 8
    kv_size: int = 0
    n_batch: int = 512
    n_ubatch: int = 0
    n_threads: int = 0
    n_threads_batch: int = 0
    swa_full: bool = False
    embedding: bool | None = None
    pooling: str = ""

    @classmethod
    def read(cls, parameters: dict[str, str], model: str) -> LlamaSettings:
        warn_unknown_parameters("llamacpp", model, parameters, _OWN_PARAMETERS)
        out = cls()
        try:
            for key, value in parameters.items():
                if key == "pooling":
                    out.pooling = value
                elif key in {"swa_full", "embedding"}:
                    setattr(out, key, value.strip().lower() in ("1", "true", "yes", "on"))
                elif key in _OWN_PARAMETERS:
                    setattr(out, key, int(value))
        except ValueError as exc:
            raise ModelLoadError(f"model {model!r}: bad llamacpp parameter: {exc}") from exc
        if out.pooling and out.pooling not in _POOLING:
            raise ModelLoadError(f"model {model!r}: pooling must be one of {sorted(_POOLING)}")
        return out


class LlamaCppRuntime(Runtime, TextModel):
    name: ClassVar[str] = "llamacpp"

    def __init__(self, path: Path, config: ModelConfig) -> None:
        super().__init__(path, config)
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.metadata: dict[str, str] = {}
        self.generator: LlamaBackend | None = None
        self.embedder: Embedder | None = None
        self._bos_text = ""

    # ---- Runtime -----------------------------------------------------------------------------

    def load(self) -> None:
        settings = LlamaSettings.read(self.config.parameters, self.config.name)
        # one load at a time: the server loads its start-up models concurrently, and two
        # threads initialising llama.cpp's backends or loading at once corrupted the heap
        # ("double free detected in tcache" at start, now and then)
        with _LOADING:
            _init_library()
            params = lc.llama_model_default_params()
            self.model = lc.llama_model_load_from_file(str(self.path).encode(), params)
            if not self.model:
                raise ModelLoadError(
                    f"model {self.config.name!r}: llama.cpp cannot load {self.path}"
                )
            try:
                self._setup(settings)
            except BaseException:
                self.unload()
                raise

    def _setup(self, settings: LlamaSettings) -> None:
        self.vocab = lc.llama_model_get_vocab(self.model)
        self._bos_text = self._token_text(lc.llama_vocab_bos(self.vocab))
        self.metadata = _metadata(self.model)
        arch = self.metadata.get("general.architecture", "")
        n_train = lc.llama_model_n_ctx_train(self.model)
        self.n_ctx = min(settings.n_ctx or 4096, n_train) if n_train > 0 else settings.n_ctx or 4096
        is_embedding = settings.embedding
        if is_embedding is None:
            is_embedding = f"{arch}.pooling_type" in self.metadata
        if is_embedding:
            self._setup_embedding(settings)
        else:
            self._setup_generation(settings)

    def _setup_generation(self, settings: LlamaSettings) -> None:
        slots = max(1, settings.n_seq_max)
        n_batch = max(settings.n_batch, slots)
        cells = max(settings.kv_size or self.n_ctx * slots, self.n_ctx)
        self.ctx = _context(
            self.model,
            cells,
            n_batch,
            settings.n_ubatch or n_batch,
            slots,
            settings,
            embeddings=False,
        )
        n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        ends = [t for t in range(n_vocab) if lc.llama_vocab_is_eog(self.vocab, t)]
        n_swa = 0 if settings.swa_full else lc.llama_model_n_swa(self.model)
        self.generator = LlamaBackend(
            self.ctx,
            self.vocab,
            n_slots=slots,
            n_ctx=self.n_ctx,
            n_cells=cells,
            n_batch=n_batch,
            n_vocab=n_vocab,
            end_tokens=ends,
            n_swa=n_swa,
        )

    def _setup_embedding(self, settings: LlamaSettings) -> None:
        slots = max(1, min(settings.n_seq_max, 16))
        pooling = _POOLING.get(settings.pooling, lc.LLAMA_POOLING_TYPE_UNSPECIFIED)
        arch = self.metadata.get("general.architecture", "")
        if not settings.pooling and f"{arch}.pooling_type" not in self.metadata:
            pooling = lc.LLAMA_POOLING_TYPE_MEAN
        n_batch = max(settings.n_batch, self.n_ctx)
        self.ctx = _context(
            self.model, n_batch, n_batch, n_batch, slots, settings, embeddings=True, pooling=pooling
        )
        self.embedder = Embedder(self.ctx, lc.llama_model_n_embd(self.model), slots, n_batch)

    def signature(self) -> Signature:
        """KServe's view: text in, text (or an embedding) out, as Triton's vLLM backend has."""
        if self.embedder is not None:
            return embedding_signature(lc.llama_model_n_embd(self.model))
        return generation_signature()

    def infer(self, inputs: Arrays) -> Arrays:
        if self.embedder is None:
            raise Internal(f"model {self.config.name!r} generates on the core's engine")
        texts = [_text(t) for t in inputs["text_input"].reshape(-1)]
        vectors, _ = self.embed(texts)
        return {"embedding": np.array(vectors, dtype=np.float32)}

    def unload(self) -> None:
        for part in (self.generator, self.embedder):
            if part is not None:
                part.close()
        self.generator = self.embedder = None
        with _LOADING:  # not while another model loads
            if self.ctx:
                lc.llama_free(self.ctx)
                self.ctx = None
            if self.model:
                lc.llama_model_free(self.model)
                self.model = None

    # ---- TextModel ---------------------------------------------------------------------------

    @property
    def embedding(self) -> bool:
        return self.embedder is not None

    @property
    def backend(self) -> Backend | None:
        return self.generator

    def template_source(self) -> TemplateSource | None:
        if self.generator is None:
            return None
        return TemplateSource(
            self.metadata.get("tokenizer.chat_template"),
            self.metadata.get("general.architecture", ""),
            self._token_text(lc.llama_vocab_bos(self.vocab)),
            self._token_text(lc.llama_vocab_eos(self.vocab)),
        )

    @property
    def vocab_size(self) -> int:
        return int(lc.llama_vocab_n_tokens(self.vocab))

    def tokenize(self, text: str, special: bool = True, add_special: bool = True) -> list[int]:
        data = text.encode()
        bos = lc.llama_vocab_bos(self.vocab)
        # a chat template that writes BOS itself: do not add a second one
        written = special and self._bos_text and text.startswith(self._bos_text)
        add_bos = add_special and not written
        size = len(data) + 8
        while True:
            buffer = (lc.llama_token * size)()
            n = lc.llama_tokenize(self.vocab, data, len(data), buffer, size, add_bos, special)
            if n >= 0:
                tokens = list(buffer[:n])
                break
            size = -n
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            del tokens[0]  # the template already wrote BOS
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        if any(not 0 <= t < n_vocab for t in tokens):
            raise InvalidArgument(f"token ids must be between 0 and {n_vocab - 1}")
        return b"".join(_piece_special(self.vocab, t) for t in tokens).decode("utf-8", "replace")

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        if self.embedder is None:
            raise InvalidArgument(f"model {self.config.name!r} is not an embedding model")
        return self.embed_tokens([self.tokenize(t) for t in texts])

    def embed_tokens(self, inputs: list[list[int]]) -> tuple[list[list[float]], int]:
        if self.embedder is None:
            raise InvalidArgument(f"model {self.config.name!r} is not an embedding model")
        for tokens in inputs:
            if len(tokens) > self.n_ctx:
                raise InvalidArgument(
                    f"an input has {len(tokens)} tokens; model "
                    f"{self.config.name!r} takes at most {self.n_ctx}"
                )
        return self.embedder.embed(inputs), sum(len(t) for t in inputs)

    def check_structured(self, structured: Constraint) -> None:
        if self.generator is None:
            raise InvalidArgument(f"model {self.config.name!r} does not generate text")
        if isinstance(structured, ToolCalling):
            for tool in structured.tools:  # each alone first: the error names the tool
                check_tool(tool, structured.syntax)
        gbnf(structured)

    def details(self) -> dict[str, Any]:
        buffer = ctypes.create_string_buffer(256)
        lc.llama_model_desc(self.model, buffer, 256)
        return {
            "format": "gguf",
            "family": self.metadata.get("general.architecture", ""),
            "description": buffer.value.decode("utf-8", "replace"),
            "parameters": int(lc.llama_model_n_params(self.model)),
            "quantization": _quantization(self.metadata),
            "context_length": int(lc.llama_model_n_ctx_train(self.model)),
            "embedding_length": int(lc.llama_model_n_embd(self.model)),
            "size": self.path.stat().st_size,
        }

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return _piece_special(self.vocab, token).decode("utf-8", "replace")


# ---- llama.cpp helpers ---------------------------------------------------------------------

_initialised = False


@lc.llama_log_callback  # type: ignore[untyped-decorator]
def _log_callback(level: int, text: bytes, user_data: Any) -> None:
    if level in (3, 4):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            log.log(logging.WARNING if level == 3 else logging.ERROR, "llama.cpp: %s", message)


#: Held while a model loads or is freed (see `LlamaCppRuntime.load`): the process's one lock
#: for llama.cpp's process-wide calls, which the advisor's probe takes too.
_LOADING = LLAMA_CPP_LOCK


def _init_library() -> None:
    global _initialised
    if not _initialised:
        lc.llama_log_set(_log_callback, ctypes.c_void_p(0))
        lc.llama_backend_init()
        _initialised = True


def _context(
    model: Any,
    n_ctx: int,
    n_batch: int,
    n_ubatch: int,
    n_seq: int,
    settings: LlamaSettings,
    *,
    embeddings: bool,
    pooling: int = -1,
) -> Any:
    params = lc.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = min(n_ubatch, n_batch)
    params.n_seq_max = n_seq
    threads = settings.n_threads or os.cpu_count() or 1
    params.n_threads = threads
    params.n_threads_batch = settings.n_threads_batch or threads
    params.kv_unified = True  # one ubatch for all sequences (split per stream is far slower)
    params.swa_full = settings.swa_full
    params.embeddings = embeddings
    params.pooling_type = pooling
    params.no_perf = True
    ctx = lc.llama_init_from_model(model, params)
    if not ctx:
        raise ModelLoadError(
            f"llama.cpp could not create a context of {n_ctx} tokens "
            f"for {n_seq} sequences (out of memory?)"
        )
    return ctx


def _metadata(model: Any) -> dict[str, str]:
    out = {}
    for i in range(lc.llama_model_meta_count(model)):
        key = _meta_string(lambda buf, n, i=i: lc.llama_model_meta_key_by_index(model, i, buf, n))
        out[key] = _meta_string(
            lambda buf, n, i=i: lc.llama_model_meta_val_str_by_index(model, i, buf, n)
        )
    return out


def _meta_string(read: Any) -> str:
    size = 256
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = read(buffer, size)
        if n < size:
            return buffer.value.decode("utf-8", "replace")
        size = n + 1


def _quantization(metadata: dict[str, str]) -> str:
    file_type = metadata.get("general.file_type")
    if file_type is None or not file_type.isdigit():
        return ""
    name = lc.llama_ftype_name(int(file_type))
    return name.decode() if name else ""


def _piece_special(vocab: Any, token: int) -> bytes:
    buffer = ctypes.create_string_buffer(256)
    n = lc.llama_token_to_piece(vocab, token, buffer, 256, 0, True)
    return buffer.raw[: max(n, 0)]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
