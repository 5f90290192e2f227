"""modelyard: one inference server for every kind of model."""

from __future__ import annotations

__version__ = "0.1.0"

from modelyard.errors import ModelyardError
from modelyard.model import Model
from modelyard.settings import Settings

__all__ = ["Model", "ModelyardError", "Settings", "__version__", "create_app"]


def __getattr__(name: str) -> object:
    # create_app pulls in the web stack; import it only when asked for.
    if name == "create_app":
        from modelyard.server import create_app

        return create_app
    raise AttributeError(name)
