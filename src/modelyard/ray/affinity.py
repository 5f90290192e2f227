"""Which replica of a text generator a request should go to: the one that already holds its
prompt's prefix in its KV cache. Pure (no Ray): the ingress computes a request's key here, and
the deployment's router (`routing.py`) maps keys to replicas with `preferred`.

- `affinity_key`: a short digest naming what a request shares with the requests before it.
  A session the client names wins: Ray's session header (`x-session-id`), else OpenAI's
  `prompt_cache_key`, else its `user`. Otherwise the prompt's leading part: for a chat, its
  messages up to and including the first user message (the system prompt and the first
  question, which every later turn of that chat repeats); for a plain prompt, its first
  `PREFIX_CHARS` characters (requests sharing them share that much KV prefix too).
- `preferred`: rendezvous (highest random weight) hashing of a key over the replicas' ids:
  every router that sees the same replicas picks the same one, with no shared state, and a
  replica that comes or goes moves only the keys it wins or held (about 1/n of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

#: Ray Serve's session header (`RAY_SERVE_SESSION_ID_HEADER_KEY`'s default); clients of a
#: cluster that already send it keep their stickiness through modelyard's ingress.
SESSION_HEADER = b"x-session-id"
#: The characters of a plain prompt that name its prefix.
PREFIX_CHARS = 256
#: The text generators' routes (POST) and the body field holding a plain prompt.
PROMPT_FIELDS = {
    "/v1/completions": "prompt",  # OpenAI
    "/api/generate": "prompt",  # Ollama (with its `system`)
    "/generate": "inputs",  # TGI
    "/generate_stream": "inputs",
}
CHAT_ROUTES = ("/v1/chat/completions", "/api/chat")  # OpenAI (TGI's too), Ollama
#: KServe v2's generate extension (`/v2/models/NAME[/versions/V]/generate[_stream]`).
KSERVE_GENERATE = ("generate", "generate_stream")


def affinity_key(path: str, data: Any, session: str | None = None) -> str | None:
    """The key of a POSTed text-generation request (its JSON body `data`), or None when it
    is not one or names nothing to share (then the router routes by load alone)."""
    field = _prompt_field(path)
    if field is None or not isinstance(data, dict):
        return None
    named = session or data.get("prompt_cache_key") or data.get("user")
    if isinstance(named, str) and named:
        return _digest(b"session", named)
    if field == "messages":
        leading = _leading_turns(data.get("messages"))
        return _digest(b"chat", *leading) if leading else None
    prompt = data.get(field)
    if not isinstance(prompt, str):  # a list of prompts, token ids: their JSON
        prompt = orjson.dumps(prompt).decode() if prompt is not None else ""
    system = data.get("system")
    parts = [system if isinstance(system, str) else "", prompt[:PREFIX_CHARS]]
    return _digest(b"prompt", *parts) if any(parts) else None


def preferred(key: str, replicas: Iterable[str]) -> str | None:
    """The replica `key` goes to: the highest of hash(key, replica) over `replicas`."""
    return max(replicas, key=lambda replica: _weight(key, replica), default=None)


def _prompt_field(path: str) -> str | None:
    if path in CHAT_ROUTES:
        return "messages"
    if path in PROMPT_FIELDS:
        return PROMPT_FIELDS[path]
    parts = path.split("/")
    if parts[1:3] == ["v2", "models"] and len(parts) > 4 and parts[-1] in KSERVE_GENERATE:
        return "text_input"
    return None


def _leading_turns(messages: Any) -> list[str]:
    """Role and text of each message up to and including the first user message."""
    if not isinstance(messages, list):
        return []
    leading: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            break
        role = str(message.get("role", ""))
        leading += [role, _text(message.get("content"))]
        if role == "user":
            break
    return leading


def _text(content: Any) -> str:
    """A message's text: a string, or OpenAI's list of parts (their `text`s)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _digest(kind: bytes, *parts: str) -> str:
    h = hashlib.blake2b(kind, digest_size=16)
    for part in parts:
        encoded = part.encode()
        h.update(b"%d:" % len(encoded))  # lengths keep ("ab", "c") apart from ("a", "bc")
        h.update(encoded)
    return h.hexdigest()


def _weight(key: str, replica: str) -> bytes:
    return hashlib.blake2b(f"{key}\0{replica}".encode(), digest_size=8).digest()
