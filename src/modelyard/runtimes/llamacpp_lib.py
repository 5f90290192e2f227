"""Import llama-cpp-python once, after bounding how long OpenMP threads spin while they wait.

llama.cpp's CPU threads (OpenMP) spin-wait at every barrier inside a decode and between
decodes (libgomp's default spins ~300k times). On a small machine those spins starve the
engine thread, the event loop and any other process of the very cores they wait on; the cost
swings wildly with load (Gemma 3 270M, 2 cores, 8 streams: 29 to 140 tok/s from run to run).
Sleeping at once (OMP_WAIT_POLICY=PASSIVE) is steady but slow: every barrier becomes a futex
wake-up (one stream: ~36 tok/s). A short spin keeps barrier waits cheap and lets idle threads
sleep between steps: GOMP_SPINCOUNT=2000 measured 57-64 tok/s for one stream and 117-129 for
eight. Set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself to override.
"""

from __future__ import annotations

from modelyard.threads import bound_openmp_spin

bound_openmp_spin()

import llama_cpp as lc  # noqa: E402 - after the spin bound, which OpenMP reads when it loads

__all__ = ["lc"]
