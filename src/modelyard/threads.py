"""Process-wide thread settings that must be in place before a native library loads.

OpenMP (libgomp: llama.cpp, torch, XGBoost, LightGBM) reads its wait policy once, when the
library loads, so this runs when `modelyard` is imported (before any model library is) and
again, harmlessly, at server start and before llama.cpp is imported. Why a short spin: see
`runtimes/llamacpp_lib.py`; for torch, two threads waiting at full spin on a 2-core machine
with one core busy elsewhere ran the benchmark MLP at batch 64 at 1.7k rows/s, 19k with the
bound and 28k on one thread (2026-12-03).
"""

from __future__ import annotations

import os
import threading

OPENMP_SPIN_COUNT = "2000"

#: Held around llama.cpp's process-wide calls: initialising its backends, loading or freeing a
#: model, and reading its system info, which it writes into one static buffer: two threads
#: reading it at once got each other's half-written text (2,124 of 100,000 calls here). That
#: race is the likely cause of a CI run's server that died at start with SIGSEGV while the
#: advisor asked llama.cpp about itself for one GGUF and the runtime loaded another (not
#: reproduced here in 40 starts). Re-entrant, since a load that fails frees what it made.
LLAMA_CPP_LOCK = threading.RLock()


def bound_openmp_spin() -> None:
    """Let OpenMP threads spin briefly, then sleep, unless the user set a policy themselves."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
