"""Process-wide thread settings that must be in place before a native library loads.

OpenMP (libgomp: llama.cpp, XGBoost, LightGBM) reads its wait policy once, when the library
loads, so this runs at server start and again, harmlessly, before llama.cpp is imported.
Why a short spin: see `runtimes/llamacpp_lib.py`.
"""

from __future__ import annotations

import os

OPENMP_SPIN_COUNT = "2000"


def bound_openmp_spin() -> None:
    """Let OpenMP threads spin briefly, then sleep, unless the user set a policy themselves."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
