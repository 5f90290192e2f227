"""One look at every model for people (the console): state, versions, kind, runtime, the
advisor's choices with their reasons, the memory estimate and the process's resident memory.

Protocol-neutral rows built from the model service; reading headers for estimates and kinds
is blocking work, so `overview` does it on a worker thread (cached per file)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.core.entries import ModelEntry
from modelyard.core.models import ModelService
from modelyard.core.served import ServedModel
from modelyard.repository.catalog import describe
from modelyard.repository.residency import estimate_bytes
from modelyard.repository.scan import ModelSource
from modelyard.runtimes.worker import WorkerRuntime
from modelyard.spec.config import ModelConfig

#: What a model is, as the console's playgrounds tell them apart.
LLM, EMBEDDING, TENSOR, PIPELINE = "llm", "embedding", "tensor", "pipeline"

_TASK_KINDS = {"text-generation": LLM, "embedding": EMBEDDING}


@dataclass(frozen=True)
class ModelRow:
    name: str
    state: str
    reason: str
    kind: str
    #: Versions on disk and versions loaded now.
    versions: list[int]
    loaded: list[int]
    runtime: str
    platform: str
    max_batch_size: int
    #: The advisor's (and the config's) choices: setting -> why.
    reasons: dict[str, str]
    #: The advisor's estimate of what serving it takes, bytes (0: cannot tell).
    estimate_bytes: int
    #: Seconds an idle model stays loaded (None: the server's default; < 0: forever) and the
    #: epoch second it unloads if left idle (None: never by itself).
    keep_alive_s: float | None
    expires_at: float | None
    context_length: int | None
    inflight: int
    queue_depth: int
    #: The resident memory of the model's own worker process (isolation: process), measured;
    #: None when it runs inside the server (its share there cannot be told apart).
    process_rss_bytes: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Overview:
    control_mode: str
    #: Why the repository API may not load or unload ("" when it may).
    locked: str
    #: Seconds an idle model stays loaded by default (None: never unloads by itself).
    keep_alive_s: float | None
    #: The server process's resident memory now (None where the platform does not say).
    rss_bytes: int | None
    models: list[ModelRow]

    def to_json(self) -> dict[str, Any]:
        return {
            "control_mode": self.control_mode,
            "locked": self.locked,
            "keep_alive_s": self.keep_alive_s,
            "rss_bytes": self.rss_bytes,
            "time": time.time(),
            "models": [m.to_json() for m in self.models],
        }


async def overview(models: ModelService) -> Overview:
    """Every model of `models` by name, as the console shows them (files read on a worker
    thread, once per file)."""
    entries = sorted(models.entries.items(), key=lambda item: item[0])
    facts = await asyncio.to_thread(lambda: [_facts(e.source) for _, e in entries])
    residence = {r.name: r for r in models.residents()}
    rows = []
    for (name, entry), (kind, estimate) in zip(entries, facts, strict=True):
        here = residence.get(name)
        expires = here.expires_at if here else None
        rows.append(_row(entry, kind, estimate, expires))
    mode = models.control_mode
    locked = (
        ""
        if mode in ("explicit", "ondemand")
        else f"model control mode {mode!r} does not allow loading or unloading through the API "
        "(start the server with --model-control-mode explicit or ondemand)"
    )
    return Overview(mode, locked, models.residency.keep_alive_s, rss_bytes(), rows)


def _row(entry: ModelEntry, kind: str, estimate: int, expires: float | None) -> ModelRow:
    served = entry.versions[max(entry.versions)] if entry.versions else None
    config = served.config if served is not None else entry.source.config
    if served is not None:
        kind = _kind_of(served)
    n_ctx = served.text.n_ctx if served is not None and served.text is not None else None
    return ModelRow(
        name=entry.name,
        state=entry.state,
        reason=entry.reason if not entry.versions else "",
        kind=kind,
        versions=sorted(entry.source.versions),
        loaded=sorted(entry.versions),
        runtime=config.runtime or "",
        platform=config.platform or "",
        max_batch_size=config.max_batch_size,
        reasons=dict(config.reasons),
        estimate_bytes=entry.estimate or estimate,
        keep_alive_s=entry.keep_alive_s,
        expires_at=expires,
        context_length=n_ctx,
        inflight=sum(v.leases for v in entry.versions.values()),
        queue_depth=sum(v.queue_depth for v in entry.versions.values()),
        process_rss_bytes=_worker_rss(entry),
        inputs=_tensors(config, "inputs") if served is not None else [],
        outputs=_tensors(config, "outputs") if served is not None else [],
    )


def _worker_rss(entry: ModelEntry) -> int | None:
    """What the model's worker processes hold, summed over its versions (None: none runs)."""
    pids = [v.runtime.pid for v in entry.versions.values() if isinstance(v.runtime, WorkerRuntime)]
    sizes = [size for size in map(rss_bytes, pids) if size]
    return sum(sizes) if sizes else None


def _kind_of(served: ServedModel) -> str:
    if served.pipeline is not None:
        return PIPELINE
    if served.generates:
        return LLM
    if served.text is not None and served.text.embedding:
        return EMBEDDING
    return TENSOR


def _tensors(config: ModelConfig, which: str) -> list[dict[str, Any]]:
    batch = [-1] if config.max_batch_size > 0 else []
    specs = config.inputs if which == "inputs" else config.outputs
    return [{"name": s.name, "datatype": s.datatype, "shape": batch + s.dims} for s in specs]


def _facts(source: ModelSource) -> tuple[str, int]:
    """(kind, estimated bytes) from the files, on a worker thread."""
    if source.config.pipeline is not None:
        return PIPELINE, 0
    if not source.versions:
        return TENSOR, 0
    version = max(source.versions)
    artifact = source.versions[version]
    key = (source.name, artifact, *_stamp(artifact))
    if key not in _FACTS:
        _FACTS[key] = _read_facts(source, artifact)
    return _FACTS[key]


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_size, stat.st_mtime_ns


#: (name, artifact, size, mtime) -> (kind, estimate): a listing reads each file once.
_FACTS: dict[tuple[str, Path, int, int], tuple[str, int]] = {}


def _read_facts(source: ModelSource, artifact: Path) -> tuple[str, int]:
    card = describe(source)
    kind = _TASK_KINDS.get(card.task, TENSOR)
    try:
        estimate = estimate_bytes(source.config, artifact)
    except OSError:
        estimate = 0
    return kind, estimate


def rss_bytes(pid: int | None = None) -> int | None:
    """The resident memory of this process (or process `pid`), from /proc (None elsewhere)."""
    if pid == 0:  # a worker that is not running now
        return None
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


__all__ = ["ModelRow", "Overview", "overview", "rss_bytes"]
