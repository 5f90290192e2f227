"""Loaded models and their life cycle: load, unload, reload, versions, control modes.

Model control modes (Triton's):
  none      load every model at start; the repository API may not load or unload
  explicit  load only the models named at start (`*` for all); the API loads and unloads
  poll      load every model at start and reload what changes on disk
  ondemand  load a model at its first request (Ollama's way); the API loads and unloads;
            idle models unload after their keep-alive, and `ResidencyPolicy` caps how many
            stay loaded and how much memory they may take
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.advisor.apply import advise_config
from modelyard.core.batcher import Batcher, batch_policy
from modelyard.core.stats import ModelStats
from modelyard.core.validate import Contract
from modelyard.errors import (
    FailedPrecondition,
    ModelLoadError,
    ModelyardError,
    NotFound,
    Unavailable,
)
from modelyard.repository.autocomplete import complete
from modelyard.repository.config import from_triton_json
from modelyard.repository.residency import (
    ResidencyPolicy,
    Resident,
    estimate_bytes,
    expired,
    victims,
)
from modelyard.repository.scan import PICKLE_SUFFIXES, ModelSource, read_entry, scan
from modelyard.runtimes import Runtime, runtime_class
from modelyard.spec.config import ModelConfig

log = logging.getLogger("modelyard.repository")

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


class ModelVersion:
    """One loaded version of a model, ready to serve."""

    def __init__(self, name: str, version: int, config: ModelConfig, runtime: Runtime) -> None:
        self.name = name
        self.version = version
        self.config = config
        self.runtime = runtime
        self.stats = ModelStats()
        self.contract = Contract(config)
        self.batcher: Batcher | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_used = time.monotonic()

    def serve(self, executor: Executor) -> Batcher:
        """Start accepting requests (on the event loop): the queue and batcher of this version."""
        self.batcher = Batcher(self.runtime, executor, self.stats, batch_policy(self.config))
        return self.batcher

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth if self.batcher else 0

    @property
    def inflight(self) -> int:
        return self._inflight

    def enter(self) -> None:
        self._inflight += 1
        self._idle.clear()
        self.last_used = time.monotonic()

    def leave(self) -> None:
        self._inflight -= 1
        self.last_used = time.monotonic()
        if self._inflight == 0:
            self._idle.set()

    async def drain(self) -> None:
        await self._idle.wait()


@dataclass
class ModelEntry:
    source: ModelSource
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: str = UNAVAILABLE
    reason: str = "not loaded"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fingerprint: float = 0.0
    #: Estimated bytes the loaded versions take (the memory budget counts these).
    estimate: int = 0
    #: Per-model keep-alive asked for by a request (None: the server's default).
    keep_alive_s: float | None = None
    #: Seconds the last load took (Ollama's load_duration).
    load_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def busy(self) -> bool:
        return any(v.inflight for v in self.versions.values())

    @property
    def last_used(self) -> float:
        return max((v.last_used for v in self.versions.values()), default=0.0)


class ModelRepository:
    def __init__(
        self,
        roots: Iterable[Path],
        executor: Executor,
        *,
        control_mode: str = "none",
        startup_models: Iterable[str] = (),
        trust_pickle: bool = False,
        residency: ResidencyPolicy | None = None,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.executor = executor
        self.control_mode = control_mode
        self.startup_models = list(startup_models)
        self.trust_pickle = trust_pickle
        self.residency = residency or ResidencyPolicy()
        self.entries: dict[str, ModelEntry] = {}
        self._loading = asyncio.Lock()

    # ---- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        for name, source in scan(self.roots).items():
            self.entries[name] = ModelEntry(source)
        wanted = list(self.entries) if self._load_all_at_start() else self.startup_models
        await asyncio.gather(*[self._load_at_start(name) for name in wanted])

    async def _load_at_start(self, name: str) -> None:
        if name not in self.entries:
            log.error("--load-model %s: no such model in %s", name, self.roots)
            return
        try:
            await self.load(name, _internal=True)
        except ModelyardError as exc:
            log.error("model %s did not load: %s", name, exc)

    def _load_all_at_start(self) -> bool:
        if self.control_mode in ("explicit", "ondemand"):
            return "*" in self.startup_models
        return True

    # ---- models on demand ------------------------------------------------------------------

    async def acquire(
        self, name: str, version: str | None = None, keep_alive_s: float | None = None
    ) -> ModelVersion:
        """The version to serve, loading the model first in `ondemand` mode; `keep_alive_s`
        (a request's keep-alive) replaces the model's keep-alive from now on (in `ondemand`
        mode only: in the other modes nothing would load the model again)."""
        entry = self.entries.get(name)
        if self.control_mode != "ondemand":
            return self.get(name, version)
        if entry is None or not entry.versions:
            await self.load(name, _internal=True)
            entry = self.entries[name]
        if keep_alive_s is not None:
            entry.keep_alive_s = keep_alive_s
        return self.get(name, version)

    def register(self, name: str) -> ModelEntry:
        """Find a model that appeared on disk (pulled, copied) and list it, not loaded."""
        source = self._find_on_disk(name)
        if source is None:
            raise NotFound(f"no model {name!r} in repository {', '.join(map(str, self.roots))}")
        entry = self.entries.get(name)
        if entry is None:
            entry = self.entries[name] = ModelEntry(source)
        else:
            entry.source = source
        return entry

    async def forget(self, name: str) -> ModelEntry:
        """Unload a model (waiting for the requests it serves) and drop it from the listing,
        before its files are removed."""
        entry = self.entry(name)
        async with entry.lock:
            await self._unload_versions(entry)
            self.entries.pop(name, None)
        return entry

    async def reap(self) -> list[str]:
        """Unload every idle model whose keep-alive has run out; return their names."""
        gone = []
        for entry in list(self.entries.values()):
            if entry.versions and expired(entry, self.residency.keep_alive_s):
                async with entry.lock:
                    if entry.versions and expired(entry, self.residency.keep_alive_s):
                        log.info("model %s was idle past its keep-alive; unloading", entry.name)
                        await self._unload_versions(entry)
                        gone.append(entry.name)
        return gone

    async def _make_room(self, name: str, needed: int) -> None:
        loaded: list[Resident] = [e for e in self.entries.values() if e.versions]
        for victim in victims(self.residency, loaded, name, needed):
            entry = self.entries[victim]
            log.info("unloading %s (least recently used) to make room for %s", victim, name)
            async with entry.lock:
                await self._unload_versions(entry)

    async def close(self) -> None:
        for name in list(self.entries):
            await self._unload_versions(self.entries[name])

    # ---- repository extension --------------------------------------------------------------

    async def load(
        self, name: str, config_json: dict[str, Any] | None = None, *, _internal: bool = False
    ) -> None:
        """Load (or reload from disk) every version the model's policy selects."""
        if not _internal:
            self._check_control("load")
        entry = self._entry_for_load(name)
        async with self._budget_lock(), entry.lock:
            source = self._reread(name, entry.source)
            if config_json is not None:
                source.config = _override(source.config, config_json, name)
                source.error = None
            entry.source = source
            entry.fingerprint = _fingerprint(source.path)
            old = entry.versions
            entry.state, entry.reason = LOADING, ""
            started = time.monotonic()
            try:
                entry.estimate = self._estimate(source)
                await self._make_room(name, entry.estimate)
                entry.versions = await self._load_versions(source)
            except ModelyardError as exc:
                entry.state, entry.reason = UNAVAILABLE, str(exc)
                entry.versions = old
                if old:
                    entry.state = READY
                raise
            entry.state, entry.reason = READY, ""
            entry.load_seconds = time.monotonic() - started
            await _unload_all(old.values(), self.executor)

    def _budget_lock(self) -> AbstractAsyncContextManager[Any]:
        """Loads run one at a time when a cap or budget is set (so their accounting holds),
        side by side otherwise."""
        if self.residency.memory_budget or self.residency.max_loaded:
            return self._loading
        return contextlib.nullcontext()

    def _estimate(self, source: ModelSource) -> int:
        if not (self.residency.memory_budget or self.residency.max_loaded):
            return 0
        selected = source.config.version_policy.select(list(source.versions))
        return sum(estimate_bytes(source.config, source.versions[v]) for v in selected)

    async def poll(self) -> None:
        """Load new and changed models, unload removed ones (model control mode poll)."""
        found = scan(self.roots)
        for name, source in found.items():
            entry = self.entries.get(name)
            if entry is not None and _fingerprint(source.path) == entry.fingerprint:
                continue
            log.info("model %s is new or changed on disk; loading", name)
            try:
                await self.load(name, _internal=True)
            except ModelyardError as exc:
                log.error("model %s did not load: %s", name, exc)
        for name in set(self.entries) - set(found):
            log.info("model %s is gone from disk; unloading", name)
            await self._unload_versions(self.entries.pop(name))

    async def unload(self, name: str) -> None:
        self._check_control("unload")
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"unknown model {name!r}")
        async with entry.lock:
            await self._unload_versions(entry)

    async def _unload_versions(self, entry: ModelEntry) -> None:
        versions, entry.versions = entry.versions, {}
        entry.state, entry.reason = UNAVAILABLE, "unloaded"
        await _unload_all(versions.values(), self.executor)

    def _check_control(self, action: str) -> None:
        if self.control_mode not in ("explicit", "ondemand"):
            raise FailedPrecondition(
                f"cannot {action} models in model control mode {self.control_mode!r}; "
                "start the server with --model-control-mode explicit"
            )

    def _entry_for_load(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        source = self._find_on_disk(name)
        if source is None:
            raise NotFound(f"no model {name!r} in repository {', '.join(map(str, self.roots))}")
        entry = self.entries[name] = ModelEntry(source)
        return entry

    def _find_on_disk(self, name: str) -> ModelSource | None:
        for root in self.roots:
            for candidate in [root / name, *sorted(root.glob(f"{name}.*"))]:
                if candidate.exists():
                    source = read_entry(candidate)
                    if source is not None and source.name == name:
                        return source
        return None

    def _reread(self, name: str, current: ModelSource) -> ModelSource:
        if not current.path.exists():
            return current
        return read_entry(current.path) or current

    async def _load_versions(self, source: ModelSource) -> dict[int, ModelVersion]:
        if source.error:
            raise ModelLoadError(f"model {source.name!r}: {source.error}")
        selected = source.config.version_policy.select(list(source.versions))
        if not selected:
            raise ModelLoadError(f"model {source.name!r} has no version folder to load")
        loop = asyncio.get_running_loop()
        loaded: dict[int, ModelVersion] = {}
        try:
            for version in selected:
                loaded[version] = await loop.run_in_executor(
                    self.executor, load_version, source, version, self.trust_pickle
                )
                loaded[version].serve(self.executor)
        except BaseException:
            await _unload_all(loaded.values(), self.executor)
            raise
        return loaded

    # ---- lookups ---------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The version to serve (the highest loaded one when none is named)."""
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"unknown model {name!r}; the repository index lists the models")
        if not entry.versions:
            raise Unavailable(f"model {name!r} is not ready ({entry.state}: {entry.reason})")
        if not version:
            return entry.versions[max(entry.versions)]
        if not version.isdigit():
            raise NotFound(f"model {name!r} has no version {version!r}; versions are numbers")
        found = entry.versions.get(int(version))
        if found is None:
            if int(version) in entry.source.versions:
                raise Unavailable(f"version {version} of model {name!r} is not loaded")
            raise NotFound(f"model {name!r} has no version {version}")
        return found

    def entry(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"unknown model {name!r}")
        return entry

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        rows = []
        for name, entry in sorted(self.entries.items()):
            if entry.versions:
                rows += [
                    {"name": name, "version": str(v), "state": READY, "reason": ""}
                    for v in sorted(entry.versions)
                ]
            elif not ready_only:
                rows.append(
                    {"name": name, "version": "", "state": entry.state, "reason": entry.reason}
                )
        return rows

    def loaded(self) -> list[ModelVersion]:
        return [v for e in self.entries.values() for v in e.versions.values()]


def load_version(source: ModelSource, version: int, trust_pickle: bool) -> ModelVersion:
    """Load one version on the calling (worker) thread and complete its config."""
    path = source.versions[version]
    config = source.config.replace(reasons=dict(source.config.reasons))
    config = advise_config(config, path)  # the advisor fills what the config leaves out
    if config.runtime is None:
        raise ModelLoadError(f"model {source.name!r}: no runtime reads {path.name}")
    if config.trust_pickle is None:
        config.trust_pickle = trust_pickle
    if path.suffix.lower() in PICKLE_SUFFIXES and not config.trust_pickle:
        raise ModelLoadError(
            f"model {source.name!r} is a pickle ({path.name}), which runs code when loaded; "
            "start with --trust-pickle (MODELYARD_TRUST_PICKLE=1) or set trust_pickle for "
            "this model if you trust the file, or save it in a safe format (.skops, .onnx, "
            "XGBoost .ubj, LightGBM .txt)"
        )
    if not path.exists():
        raise ModelLoadError(f"model {source.name!r}: {path} does not exist")
    runtime = runtime_class(config.runtime)(path, config)
    runtime.load()
    try:
        config = complete(config, runtime.signature(), path.name, runtime.named_inputs)
    except BaseException:
        runtime.unload()
        raise
    runtime.config = config
    log.info(
        "loaded %s version %d with runtime %s (%s)",
        source.name,
        version,
        config.runtime,
        config.reasons.get("runtime", "config"),
    )
    return ModelVersion(source.name, version, config, runtime)


async def _unload_all(versions: Iterable[ModelVersion], executor: Executor) -> None:
    loop = asyncio.get_running_loop()
    for version in versions:
        if version.batcher is not None:
            version.batcher.close()
        await version.drain()
        try:
            await loop.run_in_executor(executor, version.runtime.unload)
        except Exception:
            log.exception("unloading %s version %d failed", version.name, version.version)


def _override(found: ModelConfig, config_json: dict[str, Any], name: str) -> ModelConfig:
    """A config sent with a load request replaces the one on disk; what it leaves out is
    inferred again from the files (the runtime too)."""
    config = from_triton_json(config_json, name)
    config.reasons = {k: "load request" for k in config_json}
    if config.runtime is None:
        config.runtime = found.runtime
        config.reasons["runtime"] = found.reasons.get("runtime", "inferred from the files")
    return config


def _fingerprint(path: Path) -> float:
    """The newest modification time under a model's file or folder."""
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_mtime
    return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))])
