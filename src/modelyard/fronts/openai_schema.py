"""Read OpenAI request bodies (with vLLM's extra fields) into protocol-neutral parts, refusing
what is not supported rather than ignoring it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelyard.core import chat, tools
from modelyard.core.sampling import sampling_params
from modelyard.core.tools import ToolRequest
from modelyard.errors import InvalidArgument
from modelyard.spec.generation import RegexOutput, SamplingParams, StructuredOutput

#: Structured-output fields of other servers; refused loudly (use response_format).
_REFUSED = (
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "guided_decoding_backend",
    "structured_outputs",
    "guided_whitespace_pattern",
)


@dataclass
class Common:
    model: str
    params: SamplingParams
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    #: Structured output to enforce.
    structured: StructuredOutput | RegexOutput | None = None
    #: vLLM's `prompt_logprobs` was asked for: answer with its `prompt_logprobs` field.
    show_prompt_logprobs: bool = False


@dataclass
class ChatBody(Common):
    messages: list[dict[str, Any]] = field(default_factory=list)
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    add_generation_prompt: bool = True
    #: The tools offered and how they may be called (None: no tools).
    tools: ToolRequest | None = None


@dataclass
class CompletionBody(Common):
    #: Each prompt as text or as token ids.
    prompts: list[str | list[int]] = field(default_factory=list)
    echo: bool = False


def read_chat(body: Any) -> ChatBody:
    body = _object(body)
    common = _common(body)
    top = body.get("top_logprobs")
    if flag(body, "logprobs"):
        common.params.logprobs = _int(top, "top_logprobs", 0, 20) if top is not None else 0
    elif top:
        raise InvalidArgument("top_logprobs needs logprobs: true")
    for name in ("functions", "function_call"):
        if body.get(name) is not None:
            raise InvalidArgument(f"{name} is not supported; use tools and tool_choice")
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InvalidArgument("chat_template_kwargs must be an object")
    return ChatBody(
        **vars(common),
        messages=chat.normalize(body.get("messages")),
        template_kwargs=kwargs,
        add_generation_prompt=flag(body, "add_generation_prompt", True),
        tools=tools.read(
            body.get("tools"), body.get("tool_choice"), body.get("parallel_tool_calls")
        ),
    )


def read_completion(body: Any) -> CompletionBody:
    body = _object(body)
    echo = flag(body, "echo")
    # max_tokens 0 with echo scores the prompt alone (lm-eval's loglikelihood requests)
    score_only = echo and body.get("max_tokens") == 0
    common = _common({k: v for k, v in body.items() if k != "max_tokens"} if score_only else body)
    if score_only:
        common.params.max_tokens = 0
    if body.get("logprobs") is not None:
        common.params.logprobs = _int(body["logprobs"], "logprobs", 0, 20)
        if echo:  # the echoed prompt comes with its tokens' log-probabilities, as OpenAI's
            own = common.params.prompt_logprobs or 0
            common.params.prompt_logprobs = max(own, common.params.logprobs)
    if body.get("suffix"):
        raise InvalidArgument("suffix (fill-in-the-middle) is not supported")
    return CompletionBody(**vars(common), prompts=_prompts(body.get("prompt")), echo=echo)


def _common(body: dict[str, Any]) -> Common:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidArgument("model is required: the name of a model from GET /v1/models")
    for name in _REFUSED:
        if body.get(name) is not None:
            raise InvalidArgument(
                f"{name} is not supported; use response_format with json_object or json_schema"
            )
    params = sampling_params(body)
    if params.seed is not None and params.seed < 0:
        params.seed &= 0xFFFFFFFF
    params.prompt_logprobs = _prompt_logprobs(body.get("prompt_logprobs"))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidArgument("stream_options must be an object")
    stream = flag(body, "stream")
    if options and not stream:
        raise InvalidArgument("stream_options is only allowed with stream: true")
    return Common(
        model,
        params,
        _int(1 if body.get("n") is None else body["n"], "n", 1, 16),
        stream,
        bool(options.get("include_usage")),
        _response_format(body.get("response_format")),
        params.prompt_logprobs is not None,
    )


def _prompt_logprobs(value: Any) -> int | None:
    """vLLM's `prompt_logprobs`: alternatives per prompt token (true: 1; null/false: off)."""
    if value is None or value is False:
        return None
    if value is True:
        return 1
    return _int(value, "prompt_logprobs", 0, 20)


def _response_format(value: Any) -> StructuredOutput | RegexOutput | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind in ("json_object", "json", "regex"):
        return _tgi_format(kind, value.get("value"))
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidArgument(
                "response_format json_schema needs json_schema.schema, a JSON Schema object"
            )
        return StructuredOutput(schema)
    raise InvalidArgument(
        f"response_format type {kind!r} is not supported; use text, json_object or json_schema"
    )


def _tgi_format(kind: str, value: Any) -> StructuredOutput | RegexOutput:
    """TGI's response formats: a JSON schema as `value` of `json_object` (huggingface_hub
    sends json_schema that way) or `json`, and a regular expression as `value` of `regex`."""
    if kind == "regex":
        if not isinstance(value, str) or not value:
            raise InvalidArgument("response_format regex needs value, a regular expression")
        return RegexOutput(value)
    if value is None:
        return StructuredOutput()
    if not isinstance(value, dict):
        raise InvalidArgument(f"response_format {kind} value must be a JSON Schema object")
    return StructuredOutput(value or None)


def _prompts(value: Any) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(p, str) for p in value):
            return list(value)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return [list(value)]
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in value):
            return [list(p) for p in value]
    raise InvalidArgument(
        "prompt must be a string, a list of strings, a list of token ids "
        "or a list of lists of token ids"
    )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def flag(body: dict[str, Any], name: str, default: bool = False) -> bool:
    """A true/false field; absent or null is `default`."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be true or false")
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be an integer from {low} to {high}")
    return value
