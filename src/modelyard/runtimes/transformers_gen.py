"""Hugging Face causal language models through transformers on torch (CPU; extra
`[transformers]`).

A folder as `save_pretrained` writes it — `config.json` whose `architectures` names a
`*ForCausalLM`, `*.safetensors`, the tokenizer's files, `generation_config.json`, a chat
template in `tokenizer_config.json` or `chat_template.jinja` — is a text generator: this
runtime offers the core's continuous-batching engine a `Backend` (runtimes/transformers_backend:
one forward pass per step for every running sequence), the folder's tokenizer and its chat
template. `parameters` it reads (all optional; the engine's own, `max_queue`, `prefix_cache`
and `chat_template`, are read by the core):

    n_ctx       tokens one sequence may hold (default: min(2048, max_position_embeddings))
    n_seq_max   sequences decoded together (default 8); each owns n_ctx cells of the cache
    n_batch     tokens per forward pass (default 256)
    n_threads   torch's intra-op threads (default: torch's own, the cores)
    dtype       float32 (default) or bfloat16

Structured output (JSON, a JSON Schema, a regular expression) goes through llguidance
(transformers_grammar.py); tool calls are refused (400): a constraint is never ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modelyard.errors import Internal, InvalidArgument, ModelLoadError
from modelyard.runtimes import hf_causal_lm
from modelyard.runtimes.base import (
    Arrays,
    Runtime,
    Signature,
    TemplateSource,
    TextModel,
    warn_unknown_parameters,
)
from modelyard.runtimes.transformers_backend import TransformersBackend
from modelyard.runtimes.transformers_grammar import compile_grammar
from modelyard.spec.generation import (
    Backend,
    Constraint,
    generation_signature,
)

log = logging.getLogger("modelyard.transformers")

_OWN_PARAMETERS = {"n_ctx", "n_seq_max", "n_batch", "n_threads", "dtype"}
_DTYPES = ("float32", "bfloat16")
#: torch's thread count is one per process: the first model that sets it decides.
_THREADS = threading.Lock()


@dataclass
class TransformersSettings:
    n_ctx: int = 0
    n_seq_max: int = 8
    n_batch: int = 256
    n_threads: int = 0
    dtype: str = "float32"

    @classmethod
    def read(cls, parameters: dict[str, str], model: str) -> TransformersSettings:
        warn_unknown_parameters("transformers", model, parameters, _OWN_PARAMETERS)
        out = cls()
        try:
            for key, value in parameters.items():
                if key == "dtype":
                    out.dtype = value.strip().lower()
                elif key in _OWN_PARAMETERS:
                    setattr(out, key, int(value))
        except ValueError as exc:
            raise ModelLoadError(f"model {model!r}: bad transformers parameter: {exc}") from exc
        if out.dtype not in _DTYPES:
            raise ModelLoadError(f"model {model!r}: dtype must be one of {', '.join(_DTYPES)}")
        return out


class TransformersRuntime(Runtime, TextModel):
    name: ClassVar[str] = "transformers"

    def __init__(self, path: Path, config: Any) -> None:
        super().__init__(path, config)
        self.folder = path if path.is_dir() else path.parent
        self.model: Any = None
        self.tokenizer: Any = None
        self.generator: TransformersBackend | None = None
        self.architecture = ""

    # ---- Runtime -----------------------------------------------------------------------------

    def load(self) -> None:
        settings = TransformersSettings.read(self.config.parameters, self.config.name)
        architecture = hf_causal_lm(self.folder)
        if architecture is None:
            raise ModelLoadError(
                f"model {self.config.name!r}: {self.folder}/config.json names no *ForCausalLM "
                "architecture; the transformers runtime serves causal language models"
            )
        self.architecture = architecture
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelLoadError(
                f"runtime 'transformers' is not installed ({exc.name}): "
                "pip install 'modelyard[transformers]'"
            ) from exc
        if settings.n_threads > 0:
            with _THREADS:
                torch.set_num_threads(settings.n_threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(self.folder),
                local_files_only=True,
                dtype=getattr(torch, settings.dtype),
                attn_implementation="sdpa",
            )
            self.model = model.eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(
                f"model {self.config.name!r}: transformers cannot load {self.folder}: {exc}"
            ) from exc
        self._setup(settings)

    def _setup(self, settings: TransformersSettings) -> None:
        if getattr(self.model.config, "attn_logit_softcapping", None):
            raise ModelLoadError(
                f"model {self.config.name!r}: attention logit soft-capping (Gemma 2) is not "
                "supported by the transformers runtime's attention yet"
            )
        trained = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        n_ctx = settings.n_ctx or 2048
        self.n_ctx = min(n_ctx, trained) if trained > 0 else n_ctx
        slots = max(1, settings.n_seq_max)
        self.generator = TransformersBackend(
            self.model,
            n_slots=slots,
            n_ctx=self.n_ctx,
            n_batch=max(settings.n_batch, slots),
            end_tokens=self._end_tokens(),
            piece=_pieces(self.tokenizer),
            tokenizer=self.tokenizer,
        )

    def _end_tokens(self) -> set[int]:
        ends: set[int] = set()
        generation = getattr(self.model, "generation_config", None)
        for source in (getattr(generation, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ends.add(source)
            elif isinstance(source, list):
                ends.update(int(t) for t in source)
        return ends

    def signature(self) -> Signature:
        return generation_signature()

    def infer(self, inputs: Arrays) -> Arrays:
        raise Internal(f"model {self.config.name!r} generates on the core's engine")

    def unload(self) -> None:
        if self.generator is not None:
            self.generator.close()
        self.generator = None
        self.model = None

    # ---- TextModel ---------------------------------------------------------------------------

    @property
    def backend(self) -> Backend | None:
        return self.generator

    def template_source(self) -> TemplateSource | None:
        if self.generator is None:
            return None
        template = self.tokenizer.chat_template
        return TemplateSource(
            template if isinstance(template, str) else None,
            # gemma3_text -> gemma3: the names the known templates are kept under
            str(getattr(self.model.config, "model_type", "")).removesuffix("_text"),
            self.tokenizer.bos_token or "",
            self.tokenizer.eos_token or "",
        )

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def tokenize(self, text: str, special: bool = True, add_special: bool = True) -> list[int]:
        bos = self.tokenizer.bos_token
        # a chat template that writes BOS itself: do not add a second one
        written = special and bos and text.startswith(bos)
        ids = self.tokenizer(
            text,
            add_special_tokens=add_special and not written,
            split_special_tokens=not special,
        )["input_ids"]
        return [int(t) for t in ids]

    def detokenize(self, tokens: list[int]) -> str:
        n_vocab = self.vocab_size
        if any(not 0 <= t < n_vocab for t in tokens):
            raise InvalidArgument(f"token ids must be between 0 and {n_vocab - 1}")
        return str(self.tokenizer.decode(tokens, skip_special_tokens=False))

    def check_structured(self, structured: Constraint) -> None:
        compile_grammar(structured)

    def details(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "format": "safetensors",
            "family": str(getattr(config, "model_type", "")),
            "architecture": self.architecture,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "quantization": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "context_length": int(getattr(config, "max_position_embeddings", 0) or 0),
            "embedding_length": int(getattr(config, "hidden_size", 0) or 0),
            "size": sum(p.stat().st_size for p in self.folder.glob("*.safetensors")),
        }


# ---- tokens as bytes -------------------------------------------------------------------------


def _pieces(tokenizer: Any) -> Callable[[int], bytes]:
    """The bytes each token stands for (special tokens: none), cached: byte-level BPE tokens
    map their characters back to bytes; SentencePiece-style ones turn `▁` into a space and
    `<0xNN>` byte-fallback tokens into that byte."""
    special = set(tokenizer.all_special_ids)
    special.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    added = {i for i, t in tokenizer.added_tokens_decoder.items() if not t.special}
    byte_level = "ByteLevel" in repr(tokenizer.backend_tokenizer.decoder)
    table = _byte_decoder() if byte_level else {}
    cache: dict[int, bytes] = {}

    def piece(token: int) -> bytes:
        found = cache.get(token)
        if found is not None:
            return found
        text = tokenizer.convert_ids_to_tokens(token)
        if token in special or text is None:
            found = b""
        elif token in added:
            found = text.encode()
        elif byte_level:
            found = bytes(table.get(c, 0x3F) for c in text)
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            found = bytes([int(text[3:5], 16)])
        else:
            found = text.replace("\u2581", " ").encode()
        cache[token] = found
        return found

    return piece


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable character table, reversed."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}
