"""Import llama-cpp-python once, after telling OpenMP to let idle worker threads sleep.

llama.cpp's CPU threads otherwise spin between decode calls (OMP_WAIT_POLICY=ACTIVE
behaviour): on a small machine they starve the engine thread and the event loop of the very
cores they wait on. Measured on 2 cores with a tiny model over HTTP: 120 tok/s spinning,
2000 tok/s with one thread; set OMP_WAIT_POLICY yourself to override.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import llama_cpp as lc

__all__ = ["lc"]
