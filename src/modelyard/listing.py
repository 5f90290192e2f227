"""Describe a repository without a server: what `modelyard list` prints."""

from __future__ import annotations

from typing import Any

from modelyard.errors import ModelyardError
from modelyard.repository.loader import load_version
from modelyard.repository.scan import scan
from modelyard.settings import Settings
from modelyard.spec.config import ModelConfig, TensorSpec


def describe_repository(settings: Settings) -> list[dict[str, Any]]:
    """One row per model: versions, runtime and signature (each model loaded, then freed)."""
    rows = []
    for name, source in sorted(scan(list(settings.repositories)).items()):
        row: dict[str, Any] = {
            "name": name,
            "layout": source.layout,
            "path": str(source.path),
            "versions": sorted(source.versions),
        }
        try:
            if source.error:
                raise ModelyardError(source.error)
            selected = source.config.version_policy.select(list(source.versions))
            row["served_versions"] = selected
            if source.config.pipeline is not None:  # nothing of its own to load
                row.update(_pipeline(source.config))
                rows.append(row)
                continue
            loaded = load_version(source, max(selected), settings.trust_pickle)
            loaded.runtime.unload()
            config = loaded.config
            batch = [-1] if config.max_batch_size > 0 else []
            row.update(
                runtime=config.runtime,
                max_batch_size=config.max_batch_size,
                inputs=[f"{t.name} {t.datatype} {batch + t.dims}" for t in config.inputs],
                outputs=[f"{t.name} {t.datatype} {batch + t.dims}" for t in config.outputs],
                reasons=config.reasons,
            )
        except (ModelyardError, ValueError) as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows


def _pipeline(config: ModelConfig) -> dict[str, Any]:
    """A pipeline's row: its steps, and its tensors as written (untyped ones typed at load)."""
    assert config.pipeline is not None
    batch = [-1] if config.max_batch_size > 0 else []

    def tensor(t: TensorSpec) -> str:
        return (
            f"{t.name} {t.datatype} {batch + t.dims}" if t.datatype else f"{t.name} (from its step)"
        )

    steps = " -> ".join(s.model for s in config.pipeline.steps)
    return {
        "runtime": "ensemble",
        "max_batch_size": config.max_batch_size,
        "inputs": [tensor(t) for t in config.inputs],
        "outputs": [tensor(t) for t in config.outputs],
        "reasons": {**config.reasons, "runtime": f"a pipeline: {steps}"},
    }


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no models found"
    lines = []
    for row in rows:
        versions = ",".join(str(v) for v in row.get("served_versions", row["versions"]))
        head = f"{row['name']}  (versions {versions or '-'}, {row['layout']} layout)"
        lines.append(head)
        if "error" in row:
            lines.append(f"    error:   {row['error']}")
        else:
            reason = row["reasons"].get("runtime", "named in its config")
            lines.append(f"    runtime: {row['runtime']} ({reason})")
            lines.append(f"    inputs:  {'; '.join(row['inputs'])}")
            lines.append(f"    outputs: {'; '.join(row['outputs'])}")
            if row["max_batch_size"]:
                why = row["reasons"].get("max_batch_size", "config")
                lines.append(f"    batch:   up to {row['max_batch_size']} ({why})")
            lines += _advised(row["reasons"], "advisor: ", "advised")
            lines += _advised(row["reasons"], "tuned: ", "tuned")
    return "\n".join(lines)


def _advised(reasons: dict[str, str], prefix: str, label: str) -> list[str]:
    """The advisor's other choices (or a tuned pick's, with its figures), one line each kind
    (`modelyard advise` explains each)."""
    chosen = [
        f"{key.rpartition('.')[2]}={why.removeprefix(prefix).split(' — ')[0]}"
        for key, why in reasons.items()
        if why.startswith(prefix) and key not in ("runtime", "max_batch_size")
    ]
    if not chosen:
        return []
    figures = [why.partition(" — ")[2] for why in reasons.values() if why.startswith(prefix)]
    measured = f" ({figures[0]})" if prefix == "tuned: " and figures else ""
    return [f"    {label + ':':<8} {', '.join(chosen)}{measured}"]
