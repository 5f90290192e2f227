"""What the client commands show while they wait: a spinner with the seconds spent (loading a
model, starting a server) and a progress bar (pulling). Drawn on stderr, and only when it is
a terminal; nothing is drawn into pipes."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_BAR = 24


class Spinner:
    """`with Spinner("loading gemma3"):` shows `⠹ loading gemma3 1.2s` until the block ends."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Spinner:
        if self.stream.isatty():
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _draw(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            seconds = time.monotonic() - self.started
            self.stream.write(f"\r{_FRAMES[frame % len(_FRAMES)]} {self.label} {seconds:.1f}s")
            self.stream.flush()
            frame += 1


class PullProgress:
    """Shows the `{status, total, completed}` lines of a pull: a bar while bytes arrive, one
    line per other status."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._status = ""
        self._drawn_at = 0.0

    def show(self, step: dict[str, Any]) -> None:
        status = str(step.get("status", ""))
        total = int(step.get("total") or 0)
        if total:
            self._bar(status, int(step.get("completed") or 0), total)
        elif status != self._status:
            self._line(status)
        self._status = status

    def done(self) -> None:
        if self.tty and self._status:
            self.stream.write("\n")
            self.stream.flush()

    def _bar(self, status: str, completed: int, total: int) -> None:
        now = time.monotonic()
        finished = completed >= total
        if not self.tty and not finished:
            return  # a log gets the finished line only
        if self.tty and not finished and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        filled = int(_BAR * completed / total)
        text = (
            f"{status} {100 * completed // total:3d}% ▕{'█' * filled}{' ' * (_BAR - filled)}▏ "
            f"{human(completed)}/{human(total)}"
        )
        self.stream.write(f"\r\x1b[K{text}" if self.tty else text + "\n")
        self.stream.flush()

    def _line(self, status: str) -> None:
        prefix = "\n" if self.tty and self._status else ""
        self.stream.write(f"{prefix}{status}" + ("" if self.tty else "\n"))
        self.stream.flush()


def human(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


class StepBar:
    """One benchmark step: `c=4 ▕████      ▏ 3.1/10.0 s  2,310 requests  745/s  0 errors`,
    redrawn in place; nothing when the stream is not a terminal."""

    def __init__(self, label: str, total: float, unit: str, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def show(self, done: float, requests: int, rate: float, errors: int) -> None:
        if not self.tty:
            return
        filled = int(_BAR * min(done / self.total, 1.0)) if self.total else 0
        amount = (
            f"{done:.1f}/{self.total:g} s" if self.unit == "s" else f"{int(done)}/{self.total:g}"
        )
        self.stream.write(
            f"\r\x1b[K{self.label} ▕{'█' * filled}{' ' * (_BAR - filled)}▏ {amount}  "
            f"{requests:,} requests  {rate:,.0f}/s  {errors} errors"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
