"""modelyard: one inference server for every kind of model."""

from __future__ import annotations

__version__ = "0.1.0"

from modelyard.errors import ModelyardError
from modelyard.model import Model
from modelyard.settings import Settings
from modelyard.threads import bound_openmp_spin

# Before any model library loads OpenMP, in every process that imports modelyard (the server,
# `modelyard tune`, Ray replicas, worker processes): torch's libgomp at its default spin, with
# one core busy elsewhere, ran the benchmark MLP at batch 64 20x slower (1.7k rows/s against
# 19k with the bound; docs/benchmarks.md, issue 13).
bound_openmp_spin()

__all__ = ["Model", "ModelyardError", "Settings", "__version__", "create_app"]


def __getattr__(name: str) -> object:
    # create_app pulls in the web stack; import it only when asked for.
    if name == "create_app":
        from modelyard.server import create_app

        return create_app
    raise AttributeError(name)
