"""Whether a lone request may run on the event loop thread: decided from many lone executions,
not one.

Lone executions are grouped by the size of their input (size classes: powers of two of the
input's element count). A size class starts running inline once `samples` lone executions of
it were measured and the 90th percentile of the last `samples` is within the limit; it goes
back to a worker when the median of its recent inline runs is over the limit. Both are
re-checked after every lone execution (those measured while other work ran included). So the
first slow run (allocations, a cold cache), a garbage collection or a moment of load on a
2-core machine decides nothing, a model whose runs become slow while it serves moves back to a
worker once most of its recent inline runs say so, and the same model on the same machine is
decided the same way at every start.

A run on a worker is not the run inline: handing it to a thread and back costs wake-ups, and
on a loaded 2-core machine a worker's run can take several times what the same run takes on
the loop. Decided from worker runs alone, such a model would never run inline at one start
and always at another (whichever its first runs found) — the unstable c=1 latency the advisor
grid saw. So a size class whose worker runs are over the limit but within 4x of it runs every
16th lone request inline as a probe, and 4 probes within the limit start it."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

#: Lone executions of a size class measured before it may run inline, and the rolling window
#: the decision is re-made over.
DEFAULT_INLINE_SAMPLES = 16
#: The percentile of the window that must be within the limit to start running inline, and
#: the one of the inline runs that must be over it to stop (the gap keeps a rare slow run from
#: flipping it).
START_PERCENTILE = 0.9
STOP_PERCENTILE = 0.5
#: Inline runs before the stop rule reads them.
STOP_AFTER = 3
#: A size class whose runs on a worker are over the limit, but within PROBE_FACTOR of it, runs
#: every PROBE_EVERY-th lone request inline as a probe; PROBES probes within the limit start it.
PROBE_FACTOR, PROBE_EVERY, PROBES = 4, 16, 4


@dataclass
class _SizeClass:
    recent: deque[int]  # every lone run, on a worker or inline
    inline: deque[int]  # inline runs only (probes included)
    allowed: bool = False
    lone: int = 0  # lone requests refused while not allowed (the probe clock)


class InlineGate:
    def __init__(self, limit_ns: int, samples: int = DEFAULT_INLINE_SAMPLES) -> None:
        self.limit_ns = limit_ns
        self.samples = max(1, samples)
        self._classes: dict[int, _SizeClass] = {}

    def allows(self, elements: int) -> bool:
        """Whether a lone input of this many elements runs inline now (asked once per lone
        request: a refused one counts towards the next probe)."""
        size = self._classes.get(elements.bit_length()) if elements > 0 else None
        if size is None:
            return False
        if size.allowed:
            return True
        size.lone += 1
        return (
            len(size.recent) == self.samples
            and size.lone % PROBE_EVERY == 0
            and percentile(size.recent, START_PERCENTILE) <= PROBE_FACTOR * self.limit_ns
        )

    def measured(self, elements: int, ns: int, inline: bool = False) -> None:
        """One lone execution of an input of this many elements took `ns` (`inline`: on the
        event loop's thread)."""
        if not self.limit_ns or elements <= 0:
            return
        size = self._classes.get(elements.bit_length())
        if size is None:
            size = self._classes[elements.bit_length()] = _SizeClass(
                deque(maxlen=self.samples), deque(maxlen=max(self.samples, PROBES))
            )
        size.recent.append(ns)
        if inline:
            size.inline.append(ns)
        if size.allowed:
            if len(size.inline) >= STOP_AFTER and (
                percentile(size.inline, STOP_PERCENTILE) > self.limit_ns
            ):
                size.allowed = False
                size.inline.clear()
        elif len(size.recent) == self.samples and (
            percentile(size.recent, START_PERCENTILE) <= self.limit_ns
            or (len(size.inline) >= PROBES and percentile(size.inline, 1.0) <= self.limit_ns)
        ):
            size.allowed = True
            size.inline.clear()


def percentile(values: deque[int] | list[int], fraction: float) -> int:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
