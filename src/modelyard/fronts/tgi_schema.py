"""Read TGI request bodies (`{"inputs", "parameters", "stream"}`) into protocol-neutral parts,
with TGI's own validation rules and messages; what is not supported is refused (422), never
ignored."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.errors import InvalidArgument
from modelyard.spec.generation import RegexOutput, SamplingParams, StructuredOutput

#: The most sequences `best_of` may ask for, alternatives `top_n_tokens` may ask for, and
#: stop sequences one request may give (what `/info` reports).
MAX_BEST_OF = 4
MAX_TOP_N_TOKENS = 5
MAX_STOP_SEQUENCES = 16


@dataclass
class GenerateBody:
    inputs: str
    params: SamplingParams
    #: The model the body names (`model`, modelyard's addition), or None.
    model: str | None = None
    stream: bool = False
    details: bool = False
    decoder_input_details: bool = False
    return_full_text: bool = False
    truncate: int | None = None
    best_of: int = 1
    top_n_tokens: int = 0
    grammar: StructuredOutput | RegexOutput | None = None
    #: The seed of each sequence, reported in `details` (None: greedy, no seed).
    seeds: tuple[int | None, ...] = (None,)


def read_generate(body: Any, stream: bool | None = None) -> GenerateBody:
    """A `/generate` (`stream` False), `/generate_stream` (True) or `/` (the body's `stream`)
    request."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object with `inputs`")
    inputs = body.get("inputs")
    if not isinstance(inputs, str) or not inputs:
        raise InvalidArgument("`inputs` must be a non-empty string")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidArgument("`model` must be a model's name")
    if stream is None:
        stream = _bool(body.get("stream"), "stream", False)
    raw = body.get("parameters")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidArgument("`parameters` must be an object")
    unknown = sorted(k for k, v in raw.items() if k not in _FIELDS and v is not None)
    if unknown:
        raise InvalidArgument(
            f"unknown parameters {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}"
        )
    read = {name: _FIELDS[name](value) for name, value in raw.items() if value is not None}
    out = _generate_body(inputs, model, stream, read)
    _check(out, read)
    return out


def _generate_body(
    inputs: str, model: str | None, stream: bool, read: dict[str, Any]
) -> GenerateBody:
    params = SamplingParams(
        max_tokens=read.get("max_new_tokens"),
        temperature=read.get("temperature", 1.0),
        top_k=read.get("top_k", 0),
        top_p=read.get("top_p", 1.0),
        typical_p=read.get("typical_p", 1.0),
        repetition_penalty=read.get("repetition_penalty", 1.0),
        frequency_penalty=read.get("frequency_penalty", 0.0),
        stop=read.get("stop", ()),
        seed=read.get("seed"),
    )
    sampling = read.get("do_sample", False) or (
        params.temperature != 1.0 or params.top_k or params.top_p < 1 or params.typical_p < 1
    )
    best_of = read.get("best_of", 1)
    seeds: tuple[int | None, ...] = (None,) * best_of
    if sampling:
        given = params.seed
        seeds = (given,) if given is not None else tuple(_seed() for _ in range(best_of))
        params.seed = seeds[0]
    else:
        params.temperature = 0.0  # TGI's greedy decoding: no sampling asked, no warper set
    top_n = read.get("top_n_tokens", 0)
    details = read.get("details", False)
    if details or best_of > 1 or top_n:
        # each token's logprob (and its alternatives): a pass over the vocabulary per token,
        # so a stream's tokens carry it only when `details` (or `top_n_tokens`) asks
        params.logprobs = top_n
    prefill = read.get("decoder_input_details", False)
    if prefill:
        params.prompt_logprobs = top_n
    return GenerateBody(
        inputs,
        params,
        model,
        stream,
        details,
        prefill,
        read.get("return_full_text", False),
        read.get("truncate"),
        best_of,
        top_n,
        read.get("grammar"),
        seeds,
    )


def _check(out: GenerateBody, read: dict[str, Any]) -> None:
    """TGI's rules across fields."""
    if out.best_of > 1:
        if "seed" in read:
            raise InvalidArgument("`seed` must not be set when `best_of` > 1")
        if out.params.greedy:
            raise InvalidArgument("you must use sampling when `best_of` is > 1")
        if out.stream:
            raise InvalidArgument("`best_of` != 1 is not supported when streaming tokens")
    if out.decoder_input_details and out.stream:
        raise InvalidArgument(
            "`decoder_input_details` == true is not supported when streaming tokens"
        )


# ---- one reader per field --------------------------------------------------------------------


def _bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidArgument(f"`{name}` must be true or false")
    return value


def _flag(name: str) -> Callable[[Any], bool]:
    return lambda value: _bool(value, name, False)


def _number(name: str, check: Callable[[float], bool], rule: str) -> Callable[[Any], float]:
    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidArgument(f"`{name}` must be a number")
        if not check(value):
            raise InvalidArgument(f"`{name}` must be {rule}")
        return float(value)

    return read


def _integer(name: str, low: int, high: int = 2**63 - 1) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"`{name}` must be an integer")
        if not low <= value <= high:
            raise InvalidArgument(
                f"`{name}` must be strictly positive"
                if value < 1 <= low
                else f"`{name}` must be from {low} to {high}"
            )
        return value

    return read


def _stop(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidArgument("`stop` must be a list of strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise InvalidArgument(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(value)}"
        )
    return tuple(s for s in value if s)


def _refused(name: str, why: str) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if value is False:
            return value
        raise InvalidArgument(f"`{name}` is not supported: {why}")

    return read


def _grammar(value: Any) -> StructuredOutput | RegexOutput:
    """TGI's `{"type": "json" | "json_object" | "json_schema" | "regex", "value": ...}`."""
    kind = value.get("type") if isinstance(value, dict) else None
    spec = value.get("value") if isinstance(value, dict) else None
    if kind == "regex":
        if not isinstance(spec, str) or not spec:
            raise InvalidArgument("`value` cannot be empty for `regex` grammar")
        return RegexOutput(spec)
    if kind in ("json", "json_object"):
        if isinstance(spec, str):
            try:
                spec = orjson.loads(spec)
            except orjson.JSONDecodeError as exc:
                raise InvalidArgument(f"grammar `value` is not a JSON schema: {exc}") from exc
        if spec in (None, {}):
            return StructuredOutput()
        if not isinstance(spec, dict):
            raise InvalidArgument("grammar `value` must be a JSON schema (an object)")
        return StructuredOutput(spec)
    if kind == "json_schema":
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidArgument("grammar json_schema needs `value.schema`, a JSON Schema object")
        return StructuredOutput(schema)
    raise InvalidArgument(
        '`grammar` must be {"type": "json" | "regex", "value": ...} (a JSON schema or a '
        "regular expression)"
    )


def _seed() -> int:
    return random.getrandbits(32)


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "max_new_tokens": _integer("max_new_tokens", 1, 2**31 - 1),
    "temperature": _number("temperature", lambda v: v > 0, "strictly positive"),
    "top_k": _integer("top_k", 1, 2**31 - 1),
    "top_p": _number("top_p", lambda v: 0 < v < 1, "> 0.0 and < 1.0"),
    "typical_p": _number("typical_p", lambda v: 0 < v < 1, "> 0.0 and < 1.0"),
    "repetition_penalty": _number("repetition_penalty", lambda v: 0 < v <= 10, "> 0 and <= 10"),
    "frequency_penalty": _number(
        "frequency_penalty", lambda v: -2 <= v <= 2, "between -2.0 and 2.0"
    ),
    "stop": _stop,
    "seed": _integer("seed", 0, 2**64 - 1),
    "do_sample": _flag("do_sample"),
    "return_full_text": _flag("return_full_text"),
    "details": _flag("details"),
    "decoder_input_details": _flag("decoder_input_details"),
    "truncate": _integer("truncate", 1, 2**31 - 1),
    "best_of": _integer("best_of", 1, MAX_BEST_OF),
    "top_n_tokens": _integer("top_n_tokens", 0, MAX_TOP_N_TOKENS),
    "grammar": _grammar,
    "watermark": _refused("watermark", "modelyard does not watermark its outputs"),
    "adapter_id": _refused("adapter_id", "modelyard serves no LoRA adapters"),
}
