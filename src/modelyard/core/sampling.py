"""Read sampling options (OpenAI's and vLLM's names) into `SamplingParams`, checking each.
Fronts whose protocol names them differently (Ollama's `num_predict`, `repeat_penalty`)
rename first and call this."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.spec.generation import SamplingParams


def _number(name: str, low: float, high: float) -> Callable[[Any], float]:
    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidArgument(f"{name} must be a number")
        if not low <= value <= high:
            raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}")
        return float(value)

    return read


def _integer(name: str, low: int, high: int = 2**31 - 1) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{name} must be an integer")
        if not low <= value <= high:
            raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}")
        return value

    return read


def _flag(name: str) -> Callable[[Any], bool]:
    def read(value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{name} must be true or false")
        return value

    return read


def _stop(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidArgument("stop must be a string or a list of strings")
    if len(items) > 16:
        raise InvalidArgument("stop takes at most 16 strings")
    return tuple(s for s in items if s)


def _token_ids(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and t >= 0 for t in value):
        raise InvalidArgument("stop_token_ids must be a list of token ids")
    return frozenset(value)


def _logit_bias(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise InvalidArgument("logit_bias must map token ids to numbers")
    out = {}
    for key, bias in value.items():
        if not str(key).isdigit():
            raise InvalidArgument(f"logit_bias key {key!r} is not a token id")
        out[int(key)] = _number("a logit_bias value", -100, 100)(bias)
    return out


def _top_k(value: Any) -> int:
    return max(0, _integer("top_k", -1)(value))  # -1 (vLLM) and 0 both mean off


#: option name -> (SamplingParams field, reader).
READERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "max_tokens": ("max_tokens", _integer("max_tokens", 1)),
    "max_completion_tokens": ("max_tokens", _integer("max_completion_tokens", 1)),
    "temperature": ("temperature", _number("temperature", 0.0, 2.0)),
    "top_p": ("top_p", _number("top_p", 0.0, 1.0)),
    "top_k": ("top_k", _top_k),
    "min_p": ("min_p", _number("min_p", 0.0, 1.0)),
    "repetition_penalty": ("repetition_penalty", _number("repetition_penalty", 0.01, 10.0)),
    "presence_penalty": ("presence_penalty", _number("presence_penalty", -2.0, 2.0)),
    "frequency_penalty": ("frequency_penalty", _number("frequency_penalty", -2.0, 2.0)),
    "penalty_last_n": ("penalty_last_n", _integer("penalty_last_n", -1)),
    "seed": ("seed", _integer("seed", -(2**63), 2**64 - 1)),
    "stop": ("stop", _stop),
    "stop_token_ids": ("stop_token_ids", _token_ids),
    "ignore_eos": ("ignore_eos", _flag("ignore_eos")),
    "min_tokens": ("min_tokens", _integer("min_tokens", 0)),
    "logit_bias": ("logit_bias", _logit_bias),
}


def sampling_params(options: Mapping[str, Any]) -> SamplingParams:
    """SamplingParams from the options present (None values count as absent)."""
    params = SamplingParams()
    for name, (field, read) in READERS.items():
        value = options.get(name)
        if value is not None:
            setattr(params, field, read(value))
    if params.top_p <= 0.0:
        raise InvalidArgument("top_p must be above 0")
    if params.max_tokens is not None and params.min_tokens > params.max_tokens:
        raise InvalidArgument("min_tokens must not exceed max_tokens")
    return params
