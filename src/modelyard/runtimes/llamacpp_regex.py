"""A regular expression as a GBNF grammar (TGI's `regex` grammar), from Python's own parse of
the pattern, so the grammar accepts exactly the strings the pattern matches as a whole, or
fewer: `\\d` and `\\w` match their ASCII members only, and a negated class naming them (`\\D`,
`\\W`, `[^\\w-]`) ASCII characters only. What a grammar cannot express —
lookarounds, backreferences, anchors inside the pattern, case-insensitive matching — is
refused with InvalidArgument, never approximated."""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

from modelyard.errors import InvalidArgument

#: Python's regex parser (`re._parser`; `sre_parse` before 3.11, deprecated since).
_parser: Any = importlib.import_module("re._parser" if hasattr(re, "_parser") else "sre_parse")

#: Every character Python's `\s` matches, as a GBNF class body.
_SPACES = (
    "\\x09-\\x0D\\x1C-\\x20\\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000"
)
#: Non-ASCII characters: what a negated class leaves out when it names `\d` or `\w`, whose
#: Unicode members the grammar does not list (so `\W`, `\D` and `[^\w...]` match ASCII only).
_NON_ASCII = "\\x80-\\U0010FFFF"
#: category -> (negated, class body, body lists ASCII members only).
_CATEGORIES = {
    "CATEGORY_DIGIT": (False, "0-9", True),
    "CATEGORY_NOT_DIGIT": (True, "0-9", True),
    "CATEGORY_WORD": (False, "a-zA-Z0-9_", True),
    "CATEGORY_NOT_WORD": (True, "a-zA-Z0-9_", True),
    "CATEGORY_SPACE": (False, _SPACES, False),
    "CATEGORY_NOT_SPACE": (True, _SPACES, False),
}
_REFUSED_FLAGS = {re.IGNORECASE: "case-insensitive matching", re.LOCALE: "locale matching"}
_EMPTY = '""'
_EDGES = ("AT_BEGINNING", "AT_BEGINNING_STRING", "AT_END", "AT_END_STRING")


@functools.lru_cache(maxsize=64)
def regex_gbnf(pattern: str) -> str:
    """The grammar of strings that `pattern` matches whole (`^`/`$` implied)."""
    try:
        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise InvalidArgument(f"regex {pattern!r} does not compile: {exc}") from exc
    flags = parsed.state.flags
    for flag, what in _REFUSED_FLAGS.items():
        if flags & flag:
            raise InvalidArgument(f"regex {pattern!r}: {what} cannot be enforced; spell it out")
    items = list(parsed)
    while items and str(items[0][0]) == "AT" and str(items[0][1]) in _EDGES[:2]:
        items.pop(0)
    while items and str(items[-1][0]) == "AT" and str(items[-1][1]) in _EDGES[2:]:
        items.pop()
    try:
        body = _Writer(bool(flags & re.DOTALL)).sequence(items)
    except _Unsupported as exc:
        raise InvalidArgument(
            f"regex {pattern!r} uses {exc}, which a grammar cannot enforce; write it without them"
        ) from exc
    return f"root ::= {body or _EMPTY}\n"


class _Unsupported(Exception):
    pass


class _Writer:
    def __init__(self, dotall: bool) -> None:
        self.dotall = dotall

    def sequence(self, items: Any) -> str:
        return " ".join(self.item(op, arg) for op, arg in items)

    def item(self, op: Any, arg: Any) -> str:
        name = str(op)
        if name == "LITERAL":
            return f'"{_char(arg)}"'
        if name == "NOT_LITERAL":
            return f"[^{_char(arg)}]"
        if name == "ANY":
            return "[\\x00-\\U0010FFFF]" if self.dotall else "[^\\n]"
        if name == "IN":
            return _char_class(arg)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            return self.repeat(*arg)
        if name == "SUBPATTERN":
            _, add, remove, inner = arg
            if add or remove:
                raise _Unsupported("flags inside a group")
            return f"({self.sequence(inner) or _EMPTY})"
        if name == "BRANCH":
            return "(" + " | ".join(self.sequence(alt) or _EMPTY for alt in arg[1]) + ")"
        words = {
            "AT": "anchors inside the pattern",
            "GROUPREF": "backreferences",
            "ASSERT": "lookarounds",
            "ASSERT_NOT": "lookarounds",
        }
        raise _Unsupported(words.get(name, f"{name.lower().replace('_', ' ')}s"))

    def repeat(self, low: int, high: Any, inner: Any) -> str:
        unit = self.sequence(inner)
        unit = unit if len(inner) == 1 and str(inner[0][0]) != "BRANCH" else f"({unit})"
        if high is _parser.MAXREPEAT:
            suffix = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
        elif (low, high) == (0, 1):
            suffix = "?"
        else:
            suffix = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
        return unit + suffix


def _char_class(items: Any) -> str:
    negate = bool(items) and str(items[0][0]) == "NEGATE"
    parts, ascii_only = [], False
    for op, arg in items[1:] if negate else items:
        name = str(op)
        if name == "LITERAL":
            parts.append(_char(arg))
        elif name == "RANGE":
            parts.append(f"{_char(arg[0])}-{_char(arg[1])}")
        elif name == "CATEGORY" and str(arg) in _CATEGORIES:
            negated, chars, ascii_members = _CATEGORIES[str(arg)]
            if negated and (negate or len(items) > 1):
                raise _Unsupported("a negated class (\\D, \\W, \\S) inside brackets")
            negate = negate or negated
            ascii_only = ascii_only or ascii_members
            parts.append(chars)
        else:
            raise _Unsupported(f"{name.lower()} {arg} in a character class")
    if negate and ascii_only:
        parts.append(_NON_ASCII)
    return f"[{'^' if negate else ''}{''.join(parts)}]"


def _char(code: int) -> str:
    """One code point, escaped for a GBNF string or character class."""
    if 0x20 < code < 0x7F and chr(code).isalnum():
        return chr(code)
    if code < 0x100:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"
