"""Protocol-neutral types for text generation: what a front asks the LLM engine for, what the
engine sends back, and the seam (`Backend`) a runtime implements so the engine can drive it.

The engine decodes many sequences in one model call per step; a backend only has to offer
"decode this batch of (slot, position, token) rows", sampling from one row's logits, and
prefix-cache bookkeeping on its slots. No web framework and no llama.cpp names in here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelyard.spec.config import TensorSpec


class Finish(str, enum.Enum):
    STOP = "stop"  # an end-of-generation token, a stop string or a stop token id
    LENGTH = "length"  # max_tokens, or the context is full
    ABORT = "abort"  # the client went away
    ERROR = "error"
    TOOL_CALLS = "tool_calls"  # stopped after calling tools (set by the core, not the engine)


@dataclass(frozen=True, slots=True)
class StructuredOutput:
    """Output constrained to JSON: any JSON object when `schema` is None, else JSON matching
    the JSON Schema `schema`. Each backend compiles it its own way (llama.cpp: a GBNF grammar)."""

    schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RegexOutput:
    """Output that matches the regular expression `pattern` as a whole (TGI's `regex`
    grammar). A backend that cannot enforce a pattern refuses it (InvalidArgument)."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, its arguments' JSON Schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class ToolSyntax:
    """How a model writes a tool call: `start`, a JSON object `{"name": ..., "<arguments>":
    {...}}` (name first), `end`; several calls follow each other."""

    start: str = "<tool_call>"
    end: str = "</tool_call>"
    arguments: str = "arguments"


@dataclass(frozen=True, slots=True)
class ToolCalling:
    """Output that may (or must) call tools: text, or calls written in `syntax` to one of
    `tools` whose arguments match that tool's schema. With `required`, calls only; without,
    text first (never containing `syntax.start`) and optionally calls after it — or, when
    `text` is set, either JSON matching `text` or calls. No tools: text only (`none`)."""

    tools: tuple[Tool, ...]
    syntax: ToolSyntax = ToolSyntax()
    required: bool = False
    #: More than one call (else exactly one when calling) ...
    parallel: bool = True
    #: ... up to this many in one reply: a model that goes on calling is looping (a base
    #: model under a calls-only grammar would call until its context is full).
    max_calls: int = 8
    #: What the output must be when it does not call (structured output), or None: free text.
    text: StructuredOutput | None = None


#: What a generation's output must look like (compiled by the backend into its own form).
Constraint = StructuredOutput | RegexOutput | ToolCalling


@dataclass(slots=True)
class SamplingParams:
    max_tokens: int | None = None  # None: until the context is full
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    typical_p: float = 1.0  # locally typical sampling; 1.0: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    min_tokens: int = 0
    #: The structure the output must have (structured output, tool calls), or None.
    structured: Constraint | None = None
    #: Token id -> additive bias.
    logit_bias: dict[int, float] = field(default_factory=dict)
    #: Return the sampled token's log-probability and this many alternatives (None: none).
    logprobs: int | None = None
    #: Return each prompt token's log-probability (given the tokens before it) and this many
    #: alternatives (None: none). Such a prompt is read whole: no cached prefix is reused.
    prompt_logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(slots=True)
class GenerationRequest:
    id: str
    prompt: list[int]
    params: SamplingParams
    #: Monotonic time the request arrived (queue time is measured from here).
    arrival: float = 0.0


@dataclass(slots=True)
class TokenLogprob:
    token: int
    text: bytes
    logprob: float
    top: list[tuple[int, bytes, float]] = field(default_factory=list)
    #: 1 + the number of tokens the model found likelier (0: not computed).
    rank: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call of a reply: its first piece carries `id` and
    `name`, the next ones the text of its arguments' JSON as it arrives; `done` marks the
    piece that completes the arguments."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    done: bool = False


@dataclass(slots=True)
class Delta:
    """What one engine step produced for one request: new text (possibly empty while a stop
    string might still match), the new token ids, and on the last one why it finished."""

    text: str
    tokens: list[int]
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: Finish | None = None
    error: Exception | None = None
    #: On a request's first delta, when it asked for them: the log-probability of each prompt
    #: token after the first (the first has nothing before it).
    prompt_logprobs: list[TokenLogprob] | None = None
    cached_tokens: int = 0
    #: Tool calls read from the text (by the core; `text` is then what is not a call).
    calls: list[ToolCallDelta] = field(default_factory=list)


class Sampler(Protocol):
    """One request's sampling state (penalty history, grammar, random generator)."""

    def sample(self, row: int) -> int:
        """Pick the next token from the logits of batch row `row` and accept it."""

    def allow_end(self, allowed: bool) -> None:
        """Let end-of-generation tokens be sampled, or not (min_tokens, ignore_eos)."""

    def close(self) -> None: ...


class Backend(Protocol):
    """What a runtime offers the engine: one model context with `n_slots` sequence slots."""

    n_slots: int
    #: Tokens one sequence may hold (prompt + generated).
    n_ctx: int
    #: Tokens the KV cache holds for every slot together (at least n_ctx).
    n_cells: int
    #: Tokens one decode call may carry.
    n_batch: int

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        """Run the model on rows of (slot, position, token, want_logits) in one call; raise
        on failure. `Sampler.sample(i)` and `logprobs(i, ...)` then read row i's logits."""

    def new_sampler(self, params: SamplingParams) -> Sampler:
        """The sampler for one request; InvalidArgument for what the backend cannot do
        (a structured output it cannot compile)."""

    def logprobs(self, row: int, token: int, top: int) -> TokenLogprob: ...

    def is_end(self, token: int) -> bool:
        """Whether `token` ends generation (EOS, EOT, ...)."""

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens render as nothing)."""

    def keep(self, slot: int, n: int) -> int:
        """Keep the first `n` cached tokens of `slot` and drop the rest; return how many are
        really kept (fewer when the cache cannot be cut there, e.g. sliding-window layers)."""

    def share(self, source: int, slot: int, n: int) -> int:
        """Make the first `n` cached tokens of slot `source` the whole cache of `slot`, without
        recomputing them (cells shared or copied); return how many it holds: `n`, or 0 when
        the source's cache cannot give them (then `slot` is empty)."""

    def close(self) -> None: ...


# ---- text generators as KServe v2 sees them --------------------------------------------------

#: Model parameters the core's engine reads for every text generator (not the runtime's).
ENGINE_PARAMETERS = ("max_queue", "prefix_cache", "chat_template")

TEXT_INPUT = "text_input"
SAMPLING_PARAMETERS = "sampling_parameters"
TEXT_OUTPUT = "text_output"


def generation_signature() -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Text in (with optional sampling parameters as JSON), text out: the tensors of Triton's
    vLLM backend, so KServe v2 clients can generate from any text model."""
    return (
        [
            TensorSpec(TEXT_INPUT, "BYTES", [1]),
            TensorSpec(SAMPLING_PARAMETERS, "BYTES", [1], optional=True),
        ],
        [TensorSpec(TEXT_OUTPUT, "BYTES", [1])],
    )


def embedding_signature(width: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Texts in (any number), one vector of `width` per text out."""
    return [TensorSpec(TEXT_INPUT, "BYTES", [-1])], [TensorSpec("embedding", "FP32", [-1, width])]
