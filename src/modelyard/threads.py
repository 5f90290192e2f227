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

OPENMP_SPIN_COUNT = "2000"


def bound_openmp_spin() -> None:
    """Let OpenMP threads spin briefly, then sleep, unless the user set a policy themselves."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
