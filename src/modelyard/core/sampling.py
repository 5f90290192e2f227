"""Read sampling options (OpenAI's and vLLM's names) into `SamplingParams`, checking each.
Fronts whose protocol names them differently (Ollama's `num_predict`, `repeat_penalty`)
rename first and call this. Each option's check comes with the JSON Schema it enforces
(`schemas()`), which the OpenAPI document publishes: one source for both."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from modelyard.errors import InvalidArgument
from modelyard.spec.generation import SamplingParams


class Option(NamedTuple):
    """How one option is checked and read, and the JSON Schema of the values it accepts."""

    read: Callable[[Any], Any]
    schema: dict[str, Any]


def _number(name: str, low: float, high: float, above: bool = False) -> Option:
    """A number from `low` (excluded when `above`) to `high`."""

    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidArgument(f"{name} must be a number")
        if above and value <= low:
            raise InvalidArgument(f"{name} must be above {low}")
        if not low <= value <= high:
            raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}")
        return float(value)

    schema: dict[str, Any] = {"type": "number", "minimum": low, "maximum": high}
    return Option(read, {**schema, "exclusiveMinimum": True} if above else schema)


def _integer(name: str, low: int, high: int = 2**31 - 1) -> Option:
    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{name} must be an integer")
        if not low <= value <= high:
            raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}")
        return value

    return Option(read, {"type": "integer", "minimum": low, "maximum": high})


def _flag(name: str) -> Option:
    def read(value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{name} must be true or false")
        return value

    return Option(read, {"type": "boolean"})


_MAX_STOPS = 16


def _stop(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidArgument("stop must be a string or a list of strings")
    if len(items) > _MAX_STOPS:
        raise InvalidArgument(f"stop takes at most {_MAX_STOPS} strings")
    return tuple(s for s in items if s)


def _token_ids(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and t >= 0 for t in value):
        raise InvalidArgument("stop_token_ids must be a list of token ids")
    return frozenset(value)


_BIAS = _number("a logit_bias value", -100, 100)


def _logit_bias(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise InvalidArgument("logit_bias must map token ids to numbers")
    out = {}
    for key, bias in value.items():
        if not (str(key).isascii() and str(key).isdigit()):
            raise InvalidArgument(f"logit_bias key {key!r} is not a token id")
        out[int(key)] = _BIAS.read(bias)
    return out


_TOP_K = _integer("top_k", -1)


def _top_k(value: Any) -> int:
    return max(0, int(_TOP_K.read(value)))  # -1 (vLLM) and 0 both mean off


_STOP_SCHEMA = {"type": "string"}
_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}}

#: option name -> (SamplingParams field, reader).
READERS: dict[str, tuple[str, Option]] = {
    "max_tokens": ("max_tokens", _integer("max_tokens", 1)),
    "max_completion_tokens": ("max_tokens", _integer("max_completion_tokens", 1)),
    "temperature": ("temperature", _number("temperature", 0.0, 2.0)),
    "top_p": ("top_p", _number("top_p", 0.0, 1.0, above=True)),
    "top_k": ("top_k", Option(_top_k, _TOP_K.schema)),
    "min_p": ("min_p", _number("min_p", 0.0, 1.0)),
    "repetition_penalty": ("repetition_penalty", _number("repetition_penalty", 0.01, 10.0)),
    "presence_penalty": ("presence_penalty", _number("presence_penalty", -2.0, 2.0)),
    "frequency_penalty": ("frequency_penalty", _number("frequency_penalty", -2.0, 2.0)),
    "penalty_last_n": ("penalty_last_n", _integer("penalty_last_n", -1)),
    "seed": ("seed", _integer("seed", -(2**63), 2**64 - 1)),
    "stop": (
        "stop",
        Option(
            _stop,
            {
                "oneOf": [
                    _STOP_SCHEMA,
                    {"type": "array", "items": _STOP_SCHEMA, "maxItems": _MAX_STOPS},
                ]
            },
        ),
    ),
    "stop_token_ids": ("stop_token_ids", Option(_token_ids, _IDS)),
    "ignore_eos": ("ignore_eos", _flag("ignore_eos")),
    "min_tokens": ("min_tokens", _integer("min_tokens", 0)),
    "logit_bias": (
        "logit_bias",
        Option(
            _logit_bias,
            {
                "type": "object",
                "additionalProperties": _BIAS.schema,
                "propertyNames": {"pattern": "^[0-9]+$"},
                "description": "token id -> bias",
            },
        ),
    ),
}


def schemas() -> dict[str, dict[str, Any]]:
    """Each option's JSON Schema (OpenAPI 3.0's dialect), by the name a request gives it."""
    return {name: option.schema for name, (_, option) in READERS.items()}


def sampling_params(options: Mapping[str, Any]) -> SamplingParams:
    """SamplingParams from the options present (None values count as absent)."""
    params = SamplingParams()
    for name, (field, option) in READERS.items():
        value = options.get(name)
        if value is not None:
            setattr(params, field, option.read(value))
    if params.max_tokens is not None and params.min_tokens > params.max_tokens:
        raise InvalidArgument("min_tokens must not exceed max_tokens")
    return params
