"""Keeping what the model libraries bring out of the cyclic garbage collector's way.

Importing torch or TensorFlow puts hundreds of thousands of objects on the Python heap, and
they live as long as the process. Under load, the objects of requests in flight survive young
collections, so CPython runs a full collection every second or so, and each one walks the
whole heap with the event loop stopped: serving the benchmark MLP at c=64 with torch merely
imported, full collections of 105-122 ms came every 1.3-1.6 s (p99 116 ms against 45 ms
without torch); with torch, TensorFlow and OpenVINO models loaded beside it, p99 350-470 ms.

`HeapSettler` moves every object alive once the models are loaded into CPython's permanent
generation (`gc.freeze`), which collections skip (p99 51-79 ms in the same setting). It settles
again after each load and each unload, a second after the last of a burst: it first
unfreezes and collects, so the cycles of an unloaded model are freed rather than kept frozen
for good. Each settling is one full collection, with the loop stopped for about as long as one
of those it saves (docs/architecture.md, "The heap").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("modelyard.heap")

#: Seconds after a load or unload before the heap is settled (a burst settles once).
SETTLE_AFTER_S = 1.0


def settle() -> float:
    """Collect the whole heap, then freeze what is left; the seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


class HeapSettler:
    """Settles the heap once models have loaded or unloaded (see the module)."""

    def __init__(self, after_s: float = SETTLE_AFTER_S) -> None:
        self.after_s = after_s
        self._pending: asyncio.TimerHandle | None = None
        self.settled = 0

    def request(self) -> None:
        """Settle `after_s` from now, unless a settling is already due (called on the loop)."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self.after_s, self._settle)

    def _settle(self) -> None:
        self._pending = None
        seconds = settle()
        self.settled += 1
        log.debug("heap settled in %.3f s: %d objects frozen", seconds, gc.get_freeze_count())

    def close(self) -> None:
        """Give the frozen objects back to the collector (the service is closing)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        gc.unfreeze()
