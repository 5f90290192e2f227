"""modelyard on Ray Serve: the same repository, models and protocols across a Ray cluster
(docs/ray.md). `build_app` is the application builder for Ray's own tools
(`serve run modelyard.ray:build_app repository=PATH`); it needs the `ray` extra
(`pip install 'modelyard[ray]'`)."""

from __future__ import annotations

from modelyard.ray.app import build_app

__all__ = ["build_app"]
