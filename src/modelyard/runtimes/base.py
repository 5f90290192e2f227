"""The seams every runtime plugs into.

A `Runtime` is built for one model version (its artifact path and config), loads it, reports
the signature it reads from the artifact, and runs `infer` on a worker thread. A runtime whose
model reads and writes text is also a `TextModel`: it offers a tokenizer, its chat template as
written in the model file, embeddings, and for generation a `Backend` (modelyard.spec) that the
core's engine drives. A runtime says what it *is*; the core builds what serves it (batcher,
engine, chat template, metrics). It knows nothing about HTTP or gRPC and never writes into its
config; library errors are translated into `modelyard.errors` here.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.errors import InvalidArgument, ModelyardError
from modelyard.spec.calls import ModelCalls
from modelyard.spec.config import ModelConfig, TensorSpec
from modelyard.spec.generation import ENGINE_PARAMETERS, Backend, Constraint

log = logging.getLogger("modelyard.runtimes")

#: Model parameters the server reads for any model (the engine's, the batcher's inline limit,
#: the pickle switch, the advisor's goal and tuning), never a runtime's own.
SERVER_PARAMETERS = frozenset(ENGINE_PARAMETERS) | {
    "trust_pickle",
    "inline_max_us",
    "goal",
    "tune",
    "tune_budget",
    "latency_ms",
}


def warn_unknown_parameters(
    runtime: str, model: str, parameters: dict[str, str], own: set[str]
) -> None:
    """Log the parameters neither `runtime` (its `own`) nor the server reads: ignored."""
    known = own | SERVER_PARAMETERS
    unknown = set(parameters) - known
    if unknown:
        log.warning(
            "model %s: unknown %s parameters %s ignored (known: %s)",
            model,
            runtime,
            sorted(unknown),
            ", ".join(sorted(known)),
        )


Arrays = dict[str, np.ndarray]
Signature = tuple[list[TensorSpec], list[TensorSpec]]


class RequestArrays(dict[str, np.ndarray]):
    """A request's input arrays with what else its client sent: its id, its parameters and
    the outputs it asked for (empty: all). The core passes these to runtimes that read them
    (`takes_request_lists`: Triton's Python backend); to every other runtime, plain arrays."""

    __slots__ = ("id", "outputs", "parameters")

    def __init__(
        self,
        arrays: Arrays,
        id: str = "",
        parameters: dict[str, Any] | None = None,
        outputs: list[str] | None = None,
    ) -> None:
        super().__init__(arrays)
        self.id = id
        self.parameters = parameters or {}
        self.outputs = outputs or []


class ResponseArrays(dict[str, np.ndarray]):
    """A response's output arrays with the parameters the model sets on it (Triton's
    `InferenceResponse(parameters=...)`); the core sends them to the client."""

    __slots__ = ("parameters",)

    def __init__(self, arrays: Arrays, parameters: dict[str, Any]) -> None:
        super().__init__(arrays)
        self.parameters = parameters


class Runtime(abc.ABC):
    """Load one model artifact and run inferences on it (called from worker threads)."""

    name: ClassVar[str]
    #: False when the artifact takes one unnamed input (sklearn, boosters): any name will do.
    named_inputs: ClassVar[bool] = True
    #: True when `infer` is a library call whose time follows its input size (no user code
    #: waiting on I/O or locks), so a short one may run on the event loop thread while the
    #: model is idle (see core/batcher.py).
    inline_safe: ClassVar[bool] = False
    #: True when `infer_async` / `infer_stream_async` are how this runtime runs: it waits on
    #: another process (a worker) or on `async def` model code rather than computing, so the
    #: core awaits it on the event loop instead of holding a worker thread per execution.
    #: (An instance attribute: a Python model is asynchronous when its `predict` is.)
    asynchronous: bool = False
    #: True when a batch reaches the model as a list of requests (`infer_many`, as Triton's
    #: Python backend's `execute(requests)`) instead of one concatenated array per input; each
    #: request's inputs are then `RequestArrays`. (An instance attribute: a worker's proxy
    #: takes request lists when the runtime it hosts does.)
    takes_request_lists: bool = False

    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.path = path
        self.config = config
        #: Other models this one may call (BLS, composition); set by the core before `load`.
        self.calls: ModelCalls | None = None

    @abc.abstractmethod
    def load(self) -> None:
        """Read the artifact; raise `ModelLoadError` saying what is wrong."""

    def signature(self) -> Signature | None:
        """Inputs and outputs with full shapes (batch included) as the artifact declares them,
        or None when the artifact does not say (then the config must)."""
        return None

    def declared_max_batch_size(self) -> int | None:
        """The max_batch_size the model itself declares (a Triton model's
        `auto_complete_config`), or None when it says nothing."""
        return None

    @abc.abstractmethod
    def infer(self, inputs: Arrays) -> Arrays:
        """Run one inference; inputs are already validated against the config."""

    def infer_many(self, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        """Run a batch given as a list of requests (runtimes with `takes_request_lists`): one
        result per request, or the error that fails that request alone."""
        return [self.infer(inputs) for inputs in parts]

    def infer_stream(self, inputs: Arrays) -> Iterator[Arrays]:
        """Several responses for one request (decoupled models); by default just one."""
        yield self.infer(inputs)

    async def infer_async(self, inputs: Arrays) -> Arrays:
        """`infer` for an `asynchronous` runtime, awaited on the event loop."""
        raise NotImplementedError(f"runtime {self.name!r} has no asynchronous infer")

    async def infer_many_async(self, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        """`infer_many` for an `asynchronous` runtime that `takes_request_lists`."""
        raise NotImplementedError(f"runtime {self.name!r} has no asynchronous infer_many")

    def infer_stream_async(self, inputs: Arrays) -> AsyncGenerator[Arrays, None]:
        """`infer_stream` for an `asynchronous` runtime: every response as produced."""
        raise NotImplementedError(f"runtime {self.name!r} has no asynchronous infer_stream")

    def serve(self) -> None:  # noqa: B027 - optional hook
        """Called on the event loop when the loaded model starts serving."""

    @property
    def ready(self) -> bool:
        """Whether the runtime can answer now (False while a worker process restarts)."""
        return True

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Free what `load` took."""


@dataclass(frozen=True)
class TemplateSource:
    """What a model file says about chatting with it; the core picks the template from it."""

    #: The Jinja chat template written in the model file (None: none, a base model).
    text: str | None
    #: The model's architecture (a base model gets its architecture's known template).
    architecture: str = ""
    bos_token: str = ""
    eos_token: str = ""


class TextModel(abc.ABC):
    """Mixed into a `Runtime` whose model reads and writes text."""

    #: Tokens one sequence may hold.
    n_ctx: int = 0

    @property
    def embedding(self) -> bool:
        """Whether the model serves embeddings."""
        return False

    @property
    def backend(self) -> Backend | None:
        """What the core's generation engine drives (None for embedding-only models)."""
        return None

    def template_source(self) -> TemplateSource | None:
        """The model file's chat template facts (None when the model cannot chat)."""
        return None

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to this (exclusive)."""
        return 0

    @abc.abstractmethod
    def tokenize(self, text: str, special: bool = True, add_special: bool = True) -> list[int]:
        """Token ids for `text`: `special` parses special-token text such as <|im_start|>;
        `add_special` adds the tokens the model wants around a text (BOS, [CLS] .. [SEP])."""

    @abc.abstractmethod
    def detokenize(self, tokens: list[int]) -> str: ...

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """L2-normalised embeddings of `texts` and the tokens read (blocking: call it on a
        worker thread)."""
        raise InvalidArgument("this model does not serve embeddings")

    def embed_tokens(self, inputs: list[list[int]]) -> tuple[list[list[float]], int]:
        """Embeddings of inputs given as this model's token ids (blocking)."""
        raise InvalidArgument("this model does not serve embeddings")

    def check_structured(self, structured: Constraint) -> None:
        """Raise InvalidArgument when the backend cannot enforce `structured` (structured
        output or tool calls; called before a generation starts, so the client gets a 400
        rather than a failed stream)."""
        raise InvalidArgument("this model's runtime does not support structured output")

    def details(self) -> dict[str, Any]:
        """Facts about the model for listings: family, parameter count, quantization..."""
        return {}
