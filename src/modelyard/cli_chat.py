"""`modelyard run`'s conversation: one prompt, or an interactive chat that streams each reply
and keeps the history. Input: a line per message; `\"\"\"` opens and closes a multi-line
message; /bye (or Ctrl-D) leaves, /clear forgets the history, /? lists the commands;
Ctrl-C stops a reply. With `raw`, prompts are completed as written (no chat template), the
model's returned context carrying the conversation."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from modelyard.client import Client

HELP = """Available commands:
  /clear          forget the conversation so far
  /bye            exit
  /?, /help       this help

Use \"\"\" to begin and end a multi-line message."""


@dataclass
class Session:
    client: Client
    model: str
    raw: bool = False
    system: str = ""
    format: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: str | None = None
    verbose: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    history: list[dict[str, str]] = field(default_factory=list)
    context: list[int] = field(default_factory=list)

    def ask(self, text: str) -> str:
        """Send one message, printing the reply as it streams; return the reply."""
        if self.raw:
            return self._complete(text)
        messages = [*self._system(), *self.history, {"role": "user", "content": text}]
        reply = self._print(
            self.client.stream("/api/chat", self._body(messages=messages)),
            lambda item: item.get("message", {}).get("content", ""),
        )
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
        return reply

    def clear(self) -> None:
        self.history.clear()
        self.context.clear()

    def _complete(self, text: str) -> str:
        body = self._body(prompt=text, raw=True, context=self.context or None)
        return self._print(
            self.client.stream("/api/generate", body), lambda item: item.get("response", "")
        )

    def _system(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}] if self.system else []

    def _body(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "stream": True, **fields}
        extra = {
            "format": self.format,
            "keep_alive": self.keep_alive,
            "options": self.options or None,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        return {k: v for k, v in body.items() if v is not None}

    def _print(self, items: Any, text_of: Callable[[dict[str, Any]], str]) -> str:
        pieces = []
        final: dict[str, Any] = {}
        for item in items:
            piece = text_of(item)
            if piece:
                pieces.append(piece)
                self.out.write(piece)
                self.out.flush()
            if item.get("done"):
                final = item
        self.out.write("\n")
        self.out.flush()
        self.context = list(final.get("context") or self.context)
        if self.verbose and final:
            self.err.write(stats(final))
        return "".join(pieces)


def stats(final: dict[str, Any]) -> str:
    """Ollama's --verbose summary of a reply."""

    def seconds(key: str) -> float:
        return float(final.get(key) or 0) / 1e9

    def rate(count_key: str, time_key: str) -> str:
        took = seconds(time_key)
        return f"{final.get(count_key, 0) / took:.2f} tokens/s" if took else "-"

    return (
        f"total duration:       {seconds('total_duration'):.3f}s\n"
        f"load duration:        {seconds('load_duration'):.3f}s\n"
        f"prompt eval count:    {final.get('prompt_eval_count', 0)} token(s)\n"
        f"prompt eval duration: {seconds('prompt_eval_duration'):.3f}s\n"
        f"prompt eval rate:     {rate('prompt_eval_count', 'prompt_eval_duration')}\n"
        f"eval count:           {final.get('eval_count', 0)} token(s)\n"
        f"eval duration:        {seconds('eval_duration'):.3f}s\n"
        f"eval rate:            {rate('eval_count', 'eval_duration')}\n"
    )


def read_message(read: Callable[[str], str] = input) -> str:
    """One message from the terminal: a line, or the lines between two `\"\"\"`.
    Raises EOFError at the end of input."""
    line = read(">>> ")
    if not line.lstrip().startswith('"""'):
        return line
    text = line.lstrip()[3:]
    if text.endswith('"""'):
        return text[:-3]
    lines = [text] if text else []
    while True:
        line = read("... ")
        if line.rstrip().endswith('"""'):
            lines.append(line.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(line)


def interact(session: Session, read: Callable[[str], str] = input) -> None:
    """The interactive loop, until /bye or the end of input."""
    _line_editing()
    session.err.write("Send a message (/? for help)\n")
    while True:
        try:
            text = read_message(read)
        except EOFError:
            session.out.write("\n")
            return
        except KeyboardInterrupt:
            session.out.write("\nUse Ctrl + d or /bye to exit.\n")
            continue
        if not _command(session, text.strip()):
            return


def _command(session: Session, text: str) -> bool:
    """Act on one input; False to leave."""
    if text in ("/bye", "/exit"):
        return False
    if text in ("/?", "/help"):
        session.out.write(HELP + "\n")
    elif text == "/clear":
        session.clear()
        session.out.write("Cleared session context\n")
    elif text.startswith("/"):
        session.out.write(f"Unknown command '{text.split()[0]}'. Type /? for help\n")
    elif text:
        try:
            session.ask(text)
        except KeyboardInterrupt:
            session.out.write("\n")
    return True


def _line_editing() -> None:
    """Arrow keys and a history of the lines typed (where Python has readline)."""
    with contextlib.suppress(ImportError):  # not on Windows
        import readline  # noqa: F401 - importing it is what turns it on for input()
