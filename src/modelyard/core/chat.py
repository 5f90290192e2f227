"""Chat templates: turn a list of messages into the prompt text a model was trained on.

A model's own Jinja template (GGUF `tokenizer.chat_template`, Hugging Face's
`chat_template`) is rendered in a sandbox with the variables those templates expect. A model
without one (a base model) gets the known template of its architecture, with a warning; a
model config can name a known template or give its own.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes import TemplateSource

log = logging.getLogger("modelyard.chat")

_CHATML = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma has no system role: system text opens the first user turn.
_GEMMA = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = ns.system + m['content'] + '\\n\\n' %}"
    "{% else %}{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\\n' + (ns.system if role == 'user' else '')"
    " + (m['content'] | trim) + '<end_of_turn>\\n' }}"
    "{% if role == 'user' %}{% set ns.system = '' %}{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

_LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + (m['content'] | trim)"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

#: Known templates by name: (Jinja source, stop strings that end a reply).
KNOWN: dict[str, tuple[str, tuple[str, ...]]] = {
    "chatml": (_CHATML, ("<|im_end|>",)),
    "gemma": (_GEMMA, ("<end_of_turn>",)),
    "llama3": (_LLAMA3, ("<|eot_id|>",)),
}

#: The template an architecture's base models are meant to be chatted with.
BY_ARCHITECTURE = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma"}


@dataclass
class ChatTemplate:
    source: str
    bos_token: str = ""
    eos_token: str = ""
    #: Where it came from ("the model file", "known template gemma (...)", ...).
    origin: str = "the model file"
    stop: tuple[str, ...] = ()
    #: True when the model brought no template and this is its architecture's known one.
    guessed: bool = False
    #: Whether the template reads `tools` (it describes tools itself).
    reads_tools: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        env = _environment()
        try:
            self._template = env.from_string(self.source)
            variables = _variables(env, self.source)
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise ModelLoadError(f"chat template from {self.origin} does not parse: {exc}") from exc
        self.reads_tools = "tools" in variables

    def render(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        try:
            return str(
                self._template.render(
                    messages=messages,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                    **extra,
                )
            )
        except InvalidArgument:
            raise
        except Exception as exc:
            raise InvalidArgument(f"the chat template cannot render these messages: {exc}") from exc


def choose(
    model_template: str | None,
    override: str | None,
    architecture: str,
    name: str,
    bos: str = "",
    eos: str = "",
) -> ChatTemplate:
    """The template to use: the config's override (a known name or Jinja source), else the
    model's own, else the architecture's known one (with a warning), else ChatML."""
    if override:
        if override in KNOWN:
            source, stop = KNOWN[override]
            return ChatTemplate(source, bos, eos, f"known template {override} (model config)", stop)
        return ChatTemplate(override, bos, eos, "the model config")
    if model_template:
        return ChatTemplate(model_template, bos, eos)
    known = BY_ARCHITECTURE.get(architecture, "chatml")
    log.warning(
        "model %s has no chat template (a base model?); using the %s template of its "
        "architecture %s; set parameters.chat_template in model.yaml to override",
        name,
        known,
        architecture,
    )
    source, stop = KNOWN[known]
    origin = f"known template {known} (none in the model file)"
    return ChatTemplate(source, bos, eos, origin, stop, guessed=True)


def for_model(
    source: TemplateSource | None, override: str | None, name: str
) -> ChatTemplate | None:
    """The template a text model chats with (None when it cannot chat): `override` from its
    config, else what its runtime found in the model file."""
    if source is None:
        return None
    return choose(
        source.text, override, source.architecture, name, source.bos_token, source.eos_token
    )


def normalize(messages: Any) -> list[dict[str, Any]]:
    """Check OpenAI-style messages and flatten content parts into plain text."""
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument("messages must be a non-empty list")
    return [_message(m, i) for i, m in enumerate(messages)]


def _message(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidArgument(f"messages[{index}] must be an object with a role")
    out = dict(message)
    out["content"] = _content(message.get("content"), index)
    return out


def _content(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidArgument(
                    f"messages[{index}]: content part {kind!r} is not "
                    "supported by this model (text only)"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidArgument(f"messages[{index}].content must be a string or a list of parts")


def _raise(message: str) -> None:
    raise InvalidArgument(f"the chat template refused the messages: {message}")


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    """`tojson` as Hugging Face's templates expect it: keys in their order, text unescaped
    (Jinja's own sorts keys and escapes <, > and & for HTML)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _variables(env: Any, source: str) -> set[str]:
    from jinja2 import meta

    return set(meta.find_undeclared_variables(env.parse(source)))


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    env.filters["tojson"] = _tojson
    return env
