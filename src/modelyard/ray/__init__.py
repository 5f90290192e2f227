"""modelyard on Ray Serve: the same repository, models and protocols across a Ray cluster
(docs/ray.md). `build_app` is the application builder for Ray's own tools
(`serve run modelyard.ray:build_app repository=PATH`); it needs the `ray` extra
(`pip install 'modelyard[ray]'`). Imported on first use, so the parts that need no Ray
(`scaling`, `ingress`, `replica`) import without it."""

from __future__ import annotations

from typing import Any

__all__ = ["build_app"]


def __getattr__(name: str) -> Any:
    if name == "build_app":
        from modelyard.ray.app import build_app

        return build_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
