"""Read Ollama request bodies into protocol-neutral parts: the model's repository name, the
sampling parameters (Ollama's option names and defaults), keep-alive, structured output.

Ollama's load-time options (num_thread, num_gpu, num_batch, ...) are accepted and left to the
model's config (model.yaml), as are its removed samplers (mirostat, tfs_z, typical_p);
anything this server cannot honour that changes the output (images, thinking, a template
override, a suffix) is refused rather than ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from modelyard.core import chat, tools
from modelyard.core.sampling import sampling_params
from modelyard.core.tools import ToolRequest
from modelyard.errors import InvalidArgument
from modelyard.settings import parse_duration
from modelyard.spec.generation import SamplingParams, StructuredOutput

log = logging.getLogger("modelyard.ollama")

#: Ollama's sampling defaults (its DefaultOptions), applied unless a request sets them.
DEFAULTS = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "repetition_penalty": 1.1,
    "penalty_last_n": 64,
}
#: Ollama option -> the sampling option of the same meaning.
_RENAMED = {
    "num_predict": "max_tokens",
    "repeat_penalty": "repetition_penalty",
    "repeat_last_n": "penalty_last_n",
}
_SAMPLING = {
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "min_tokens",
    "ignore_eos",
}
#: Options that size or place the model when it loads: the model's config decides them here.
LOAD_TIME = {
    "num_thread",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "f16_kv",
    "use_mmap",
    "use_mlock",
    "numa",
    "vocab_only",
    "num_keep",
    "logits_all",
    "embedding_only",
}
_IGNORED = {"mirostat", "mirostat_tau", "mirostat_eta", "tfs_z", "typical_p", "penalize_newline"}


@dataclass
class Common:
    model: str  # the repository's name for it (":latest" dropped)
    asked: str  # the name as the request wrote it (echoed back)
    params: SamplingParams = field(default_factory=SamplingParams)
    stream: bool = True
    keep_alive_s: float | None = None  # None: as before; <0 forever; 0 unload when idle
    #: ("json", None) or ("json_schema", schema), from `format`.
    structured: StructuredOutput | None = None
    num_ctx: int | None = None


@dataclass
class GenerateBody(Common):
    prompt: str = ""
    system: str = ""
    raw: bool = False
    context: list[int] = field(default_factory=list)


@dataclass
class ChatBody(Common):
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: The tools offered (Ollama has no tool_choice: the model may call them or answer).
    tools: ToolRequest | None = None


@dataclass
class EmbedBody:
    model: str
    asked: str
    texts: list[str]
    keep_alive_s: float | None = None
    dimensions: int | None = None
    truncate: bool = True


def read_generate(body: Any) -> GenerateBody:
    body = _object(body)
    for name in ("suffix", "template", "images"):
        if body.get(name):
            raise InvalidArgument(_REFUSALS[name])
    context = body.get("context") or []
    if not isinstance(context, list) or not all(_is_int(t) for t in context):
        raise InvalidArgument("context must be a list of token ids (a previous reply's context)")
    return GenerateBody(
        **vars(_common(body)),
        prompt=_text(body, "prompt"),
        system=_text(body, "system"),
        raw=_flag(body, "raw", False),
        context=list(context),
    )


def read_chat(body: Any) -> ChatBody:
    body = _object(body)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise InvalidArgument("messages must be a list of {role, content} objects")
    for message in messages:
        if isinstance(message, dict) and message.get("images"):
            raise InvalidArgument(_REFUSALS["images"])
    normalized = chat.normalize(messages) if messages else []
    return ChatBody(**vars(_common(body)), messages=normalized, tools=tools.read(body.get("tools")))


def read_embed(body: Any, old: bool = False) -> EmbedBody:
    """/api/embed (`input`: a string or a list) or, when `old`, /api/embeddings (`prompt`)."""
    body = _object(body)
    model, asked = model_name(body.get("model"))
    value = body.get("prompt" if old else "input")
    texts = [] if value in (None, "") else [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InvalidArgument("input must be a string or a list of strings")
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims < 1):
        raise InvalidArgument("dimensions must be a positive integer")
    return EmbedBody(
        model, asked, texts, keep_alive(body.get("keep_alive")), dims, _flag(body, "truncate", True)
    )


def model_name(value: Any) -> tuple[str, str]:
    """(repository name, name as asked): `NAME:latest` is the model `NAME`."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument("model is required")
    asked = value.strip()
    return asked.removesuffix(":latest"), asked


#: A keep_alive this long or longer is forever (`now + 1e300 s` is no date: /api/ps broke).
FOREVER_S = 100 * 365 * 86400.0


def keep_alive(value: Any) -> float | None:
    """Seconds from Ollama's keep_alive (a duration string or seconds); -1.0: forever."""
    seconds = _keep_alive(value)
    return -1.0 if seconds is not None and seconds >= FOREVER_S else seconds


def _keep_alive(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidArgument("keep_alive must be a duration such as 5m, or seconds")
    if isinstance(value, int | float):
        return -1.0 if value < 0 else float(value)
    if not isinstance(value, str):
        raise InvalidArgument("keep_alive must be a duration such as 5m, or seconds")
    if value.strip().startswith("-"):
        return -1.0
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InvalidArgument(f"keep_alive: {exc}") from exc
    return -1.0 if seconds is None else seconds


def read_options(options: Any) -> tuple[SamplingParams, int | None]:
    """Sampling parameters (Ollama's defaults where unset) and num_ctx from `options`."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidArgument("options must be an object")
    values: dict[str, Any] = dict(DEFAULTS)
    for key, value in options.items():
        if value is None:
            continue
        if key in _RENAMED:
            values[_RENAMED[key]] = value
        elif key in _SAMPLING:
            values[key] = value
        elif key not in LOAD_TIME | _IGNORED | {"num_ctx"}:
            log.warning("ignoring unknown option %r", key)
    _special_values(values)
    num_ctx = options.get("num_ctx")
    if num_ctx is not None and (not _is_int(num_ctx) or num_ctx < 1):
        raise InvalidArgument("num_ctx must be a positive integer")
    return sampling_params(values), num_ctx


def _special_values(values: dict[str, Any]) -> None:
    """Ollama's spellings of "no limit" and "random"."""
    predict = values.get("max_tokens")
    if _is_int(predict) and predict in (-1, -2):  # until the end / until the context is full
        del values["max_tokens"]
    elif predict is not None and (not _is_int(predict) or predict < 1):
        raise InvalidArgument("num_predict must be a positive integer, -1 or -2")
    if _is_int(values.get("seed")) and values["seed"] < 0:
        del values["seed"]  # -1: a random seed
    if values.get("repetition_penalty") == 0:
        values["repetition_penalty"] = 1.0  # 0 turns the penalty off in llama.cpp's terms


def _common(body: dict[str, Any]) -> Common:
    model, asked = model_name(body.get("model"))
    if body.get("think"):
        raise InvalidArgument(f"model {asked!r} does not support thinking")
    params, num_ctx = read_options(body.get("options"))
    if _flag(body, "logprobs", False):
        top = body.get("top_logprobs") or 0
        if not _is_int(top) or not 0 <= top <= 20:
            raise InvalidArgument("top_logprobs must be an integer from 0 to 20")
        params.logprobs = top
    return Common(
        model,
        asked,
        params,
        _flag(body, "stream", True),
        keep_alive(body.get("keep_alive")),
        structured(body.get("format")),
        num_ctx,
    )


def structured(value: Any) -> StructuredOutput | None:
    if value is None or value == "":
        return None
    if value == "json":
        return StructuredOutput()
    if isinstance(value, dict):
        return StructuredOutput(value)
    raise InvalidArgument('format must be "json" or a JSON schema object')


_REFUSALS = {
    "suffix": "suffix (fill-in-the-middle) is not supported",
    "template": "a per-request template is not supported; set parameters.chat_template in the "
    "model's model.yaml",
    "images": "images are not supported: the models served here read text only",
}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be true or false")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
