"""Whether a lone request may run on the event loop thread: decided from many lone executions,
not one.

Lone executions are grouped by the size of their input (size classes: powers of two of the
input's element count). A size class starts running inline once `samples` lone executions of
it were measured and the 90th percentile of the last `samples` is within the limit; it goes
back to a worker when the median of that rolling window is over the limit. Both are re-checked
after every lone execution, inline ones and those measured while other work ran included. So
the first slow run (allocations, a cold cache), a garbage collection or a moment of load on a
2-core machine decides nothing, a model whose runs become slow while it serves (other models
busy, the machine loaded) moves back to a worker once most of its recent runs say so, and the
same model on the same machine is decided the same way at every start.
"""

from __future__ import annotations

import math
from collections import deque

#: Lone executions of a size class measured before it may run inline, and the rolling window
#: the decision is re-made over.
DEFAULT_INLINE_SAMPLES = 16
#: The percentile of the window that must be within the limit to start running inline, and
#: the one that must be over it to stop (the gap keeps a rare slow run from flipping it).
START_PERCENTILE = 0.9
STOP_PERCENTILE = 0.5


class InlineGate:
    def __init__(self, limit_ns: int, samples: int = DEFAULT_INLINE_SAMPLES) -> None:
        self.limit_ns = limit_ns
        self.samples = max(1, samples)
        self._windows: dict[int, deque[int]] = {}
        self._allowed: set[int] = set()

    def allows(self, elements: int) -> bool:
        """Whether a lone input of this many elements may run inline."""
        return elements > 0 and elements.bit_length() in self._allowed

    def measured(self, elements: int, ns: int) -> None:
        """One lone execution of an input of this many elements took `ns`."""
        if not self.limit_ns or elements <= 0:
            return
        size_class = elements.bit_length()
        window = self._windows.get(size_class)
        if window is None:
            window = self._windows[size_class] = deque(maxlen=self.samples)
        window.append(ns)
        if len(window) < self.samples:
            return
        if size_class in self._allowed:
            if percentile(window, STOP_PERCENTILE) > self.limit_ns:
                self._allowed.discard(size_class)
        elif percentile(window, START_PERCENTILE) <= self.limit_ns:
            self._allowed.add(size_class)


def percentile(values: deque[int] | list[int], fraction: float) -> int:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
