"""The one model service every front's model management calls: which models exist and in what
state, load / unload / reload, versions, control modes, models on demand with keep-alive and
eviction, pull / copy / delete, and the lease that holds a version while it serves.

Model control modes (Triton's):
  none      load every model at start; the repository API may not load or unload
  explicit  load only the models named at start (`*` for all); the API loads and unloads
  poll      load every model at start and reload what changes on disk
  ondemand  load a model at its first request (Ollama's way); the API loads and unloads;
            idle models unload after their keep-alive, and `ResidencyPolicy` caps how many
            stay loaded and how much memory they may take

Fronts only translate: the KServe HTTP and gRPC repository routes and Ollama's model routes
call the same methods, with load options parsed once (`LoadOptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from modelyard.core.entries import (
    LOADING,
    READY,
    UNAVAILABLE,
    Lease,
    LoadOptions,
    ModelEntry,
    ModelStatus,
    Residence,
)
from modelyard.core.heap import HeapSettler
from modelyard.core.pipeline import resolve, uses
from modelyard.core.served import EngineWatch, ServedModel
from modelyard.errors import (
    FailedPrecondition,
    InvalidArgument,
    ModelLoadError,
    ModelyardError,
    NotFound,
    Unavailable,
)
from modelyard.repository.catalog import ModelCard, describe, expires_at, is_text_model
from modelyard.repository.config import from_triton_json
from modelyard.repository.loader import load_version
from modelyard.repository.pipeline_advice import advised_reasons, served_advice
from modelyard.repository.residency import (
    ResidencyPolicy,
    Resident,
    expired,
    served_estimate,
    victims,
)
from modelyard.repository.scan import ModelSource, read_entry, reread, scan
from modelyard.repository.store import ModelStore, Progress, PullPolicy, check_name
from modelyard.runtimes import runtime_suffixes
from modelyard.spec.calls import ModelCalls
from modelyard.spec.config import ModelConfig
from modelyard.spec.pipeline import LATEST, PipelineSpec

__all__ = [
    "Lease",
    "LoadOptions",
    "ModelCard",
    "ModelService",
    "ModelStatus",
    "Progress",
    "Residence",
    "ServedModel",
]

log = logging.getLogger("modelyard.models")

#: The pipelines whose steps the current task is loading, outermost first.
_LOADING: ContextVar[tuple[str, ...]] = ContextVar("modelyard_loading_pipelines", default=())


class ModelService:
    def __init__(
        self,
        roots: Iterable[Path],
        executor: Executor,
        *,
        control_mode: str = "none",
        startup_models: Iterable[str] = (),
        trust_pickle: bool = False,
        residency: ResidencyPolicy | None = None,
        watch: EngineWatch | None = None,
        keep_startup: bool = False,
        pull: PullPolicy | None = None,
        calls: Callable[[str], ModelCalls] | None = None,
        threads: int = 0,
        goal: str = "latency",
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.executor = executor
        self.control_mode = control_mode
        self.startup_models = list(startup_models)
        self.trust_pickle = trust_pickle
        self.residency = residency or ResidencyPolicy()
        self.watch = watch
        #: Models loaded at start stay until a request's keep-alive says otherwise (the
        #: default keep-alive is for models that requests load).
        self.keep_startup = keep_startup
        self.pull_policy = pull or PullPolicy()
        #: What the model of a given name may call other models through (composition, BLS).
        self.calls = calls
        #: Worker threads in `executor` (0: unknown; no model is capped, no starvation seen).
        self.threads = threads
        #: What the advisor configures models for unless their config names a goal.
        self.goal = goal
        self.entries: dict[str, ModelEntry] = {}
        self.store = ModelStore(self.roots[0]) if self.roots else None
        self._loading = asyncio.Lock()
        self._started = False
        self.heap = HeapSettler()
        self._draining = False

    # ---- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Find the models and load the start-up set; the service is ready afterwards."""
        for name, source in scan(self.roots).items():
            self.entries[name] = ModelEntry(source)
        if not self.entries and self.roots:
            log.warning(
                "no models in %s: a repository holds one entry per model (NAME/config.pbtxt + "
                "NAME/1/model.onnx, NAME/model.yaml, or a model file such as NAME.onnx); a "
                "model's own folder may be served too",
                ", ".join(map(str, self.roots)),
            )
        wanted = list(self.entries) if self._load_all_at_start() else self.startup_models
        await asyncio.gather(*[self._load_at_start(name) for name in wanted])
        self._started = True

    @property
    def ready(self) -> bool:
        """Whether the server takes requests: started (start-up models loaded), not draining,
        and its worker threads not all held by hung executions (`starved`)."""
        return self._started and not self._draining and not self.starved

    @property
    def starved(self) -> bool:
        """Every shared worker thread is held by an execution past its model's
        execution_timeout_s: no in-process model can run, nor any load."""
        hung = sum(m.threads_hung for m in self.loaded())
        return bool(self.threads) and hung >= self.threads

    def drain(self) -> None:
        """The server is shutting down: say not ready from now on."""
        self._draining = True

    async def close(self) -> None:
        self._draining = True
        for name in list(self.entries):
            await self._unload_versions(self.entries[name])
        self.heap.close()

    async def _load_at_start(self, name: str) -> None:
        if name not in self.entries:
            log.error("--load-model %s: no such model in %s", name, self.roots)
            return
        try:
            await self.load(name, _internal=True)
        except ModelyardError as exc:
            log.error("model %s did not load: %s", name, exc)
            return
        if self.keep_startup:
            self.entries[name].keep_alive_s = -1.0  # never idle out

    def _load_all_at_start(self) -> bool:
        if self.control_mode in ("explicit", "ondemand"):
            return "*" in self.startup_models
        return True

    # ---- serving ---------------------------------------------------------------------------

    def lease(
        self, name: str, version: str | None = None, keep_alive_s: float | None = None
    ) -> Lease:
        """`async with models.lease(name) as model:` the version to serve, loaded first in
        `ondemand` mode, and never unloaded or evicted until the block ends. `keep_alive_s`
        (a request's keep-alive) replaces the model's keep-alive from now on (in `ondemand`
        mode only: in the other modes nothing would load the model again)."""
        return Lease(self, name, version, keep_alive_s)

    async def acquire(
        self, name: str, version: str | None = None, keep_alive_s: float | None = None
    ) -> ServedModel:
        """The version to serve, loaded first in `ondemand` mode (see `lease`)."""
        if self.control_mode != "ondemand":
            return self.get(name, version)
        entry = self.entries.get(name)
        if entry is None or not entry.versions:
            await self.load(name, _internal=True)
            entry = self.entries[name]
        if keep_alive_s is not None:
            entry.keep_alive_s = keep_alive_s
        return self.get(name, version)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The loaded version to serve (the highest one when none is named)."""
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"unknown model {name!r}; the repository index lists the models")
        if not entry.versions:
            raise Unavailable(f"model {name!r} is not ready ({entry.state}: {entry.reason})")
        if not version:
            return entry.versions[max(entry.versions)]
        if not (version.isascii() and version.isdigit()):
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

    def loaded(self) -> list[ServedModel]:
        return [v for e in list(self.entries.values()) for v in e.versions.values()]

    def latest(self) -> list[ServedModel]:
        """The highest loaded version of every model, by name."""
        return [e.versions[max(e.versions)] for _, e in sorted(self.entries.items()) if e.versions]

    # ---- status ----------------------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[ModelStatus]:
        rows = []
        for name, entry in sorted(self.entries.items()):
            if entry.versions:
                rows += [ModelStatus(name, str(v), READY, "") for v in sorted(entry.versions)]
            elif not ready_only:
                rows.append(ModelStatus(name, "", entry.state, entry.reason))
        return rows

    def ready_version(self, name: str, version: str | None = None) -> bool:
        try:
            return self.get(name, version).ready
        except ModelyardError:
            return False

    def residents(self) -> list[Residence]:
        """Every loaded model: its estimate, when it unloads if left idle, its context."""
        out = []
        for entry in [e for e in list(self.entries.values()) if e.versions]:
            keep = entry.keep_alive_s
            if keep is None:
                keep = self.residency.keep_alive_s
            served = entry.versions[max(entry.versions)]
            n_ctx = served.text.n_ctx if served.text is not None else None
            until = expires_at(entry.last_used, entry.busy, keep)
            out.append(Residence(entry.name, entry.estimate, until, n_ctx, entry.source))
        return out

    async def describe(self, name: str) -> tuple[ModelCard, str | None]:
        """What the model's files tell (read on a worker thread, cached per file) and the chat
        template a loaded model really uses (perhaps its architecture's known one)."""
        entry = self.entries.get(name)
        if entry is None:
            try:
                entry = await self.register(name)  # on disk, not listed yet
            except NotFound:
                raise NotFound(f"model {name!r} not found") from None
        card = await asyncio.to_thread(describe, entry.source)
        template = None
        if entry.versions:
            served = entry.versions[max(entry.versions)]
            template = served.template.source if served.template is not None else None
        return card, template

    async def cards(self) -> list[ModelCard]:
        """Cards of the listed language and embedding models, read on a worker thread
        without loading a model."""
        listed = [e.source for e in list(self.entries.values())]
        return await asyncio.to_thread(_text_cards, listed)

    async def cards_of(self, sources: list[ModelSource]) -> list[ModelCard]:
        """Cards of these models, in order, in one trip to a worker thread."""
        return await asyncio.to_thread(lambda: [describe(s) for s in sources])

    # ---- load and unload -------------------------------------------------------------------

    async def load(
        self,
        name: str,
        options: LoadOptions | None = None,
        *,
        _internal: bool = False,
        _for: str | None = None,
    ) -> None:
        """Load (or reload from disk) every version the model's policy selects; a pipeline
        loads its step models first (`_for`: the pipeline a step is loaded for)."""
        if not _internal:
            self._check_control("load")
        entry = await self._entry_for_load(name)
        if _for is None:
            entry.alone = True
        else:
            entry.needed_by.add(_for)
        try:
            await self._load_steps(entry, options)
            await self._load_entry(entry, options)
        except BaseException:
            await self._release_steps(entry)  # those loaded for a pipeline that did not load
            raise

    async def reload(self, name: str) -> None:
        """Load a loaded model again from disk, whatever the control mode (the server's own
        doing, e.g. to apply a tuned config); it serves its old version until the new one is
        ready. Nothing happens to a model that is not loaded."""
        entry = self.entries.get(name)
        if entry is not None and entry.versions:
            await self._load_entry(entry, None)

    async def _load_entry(self, entry: ModelEntry, options: LoadOptions | None) -> None:
        name = entry.name
        async with self._budget_lock(), entry.lock:
            source = await asyncio.to_thread(self._reread, entry.source)
            if options is not None and options.config is not None:
                source.config = _override(source.config, options.config, name)
                source.error = None
            entry.source = source
            entry.fingerprint = await asyncio.to_thread(_fingerprint, source.path)
            old = entry.versions
            entry.state, entry.reason = LOADING, ""
            started = time.monotonic()
            try:
                entry.estimate = await asyncio.to_thread(self._estimate, source)
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
            await self._retire(old.values())
            self.heap.request()  # what the model's library brought, out of the collector's way

    async def unload(self, name: str) -> None:
        self._check_control("unload")
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"unknown model {name!r}")
        self._check_not_a_step(name, "unload")
        async with entry.lock:
            await self._unload_versions(entry)
        await self._release_steps(entry)

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

    def _budget_lock(self) -> AbstractAsyncContextManager[Any]:
        """Loads run one at a time when a cap or budget is set (so their accounting holds),
        side by side otherwise."""
        if self.residency.memory_budget or self.residency.max_loaded:
            return self._loading
        return contextlib.nullcontext()

    def _estimate(self, source: ModelSource) -> int:
        if not (self.residency.memory_budget or self.residency.max_loaded):
            return 0
        if source.config.pipeline is not None:
            return 0  # its steps count as the models they are
        return served_estimate(source.config, source.versions)

    async def _make_room(self, name: str, needed: int) -> None:
        loaded: list[Resident] = [e for e in self.entries.values() if e.versions]
        for victim in victims(self.residency, loaded, name, needed):
            entry = self.entries[victim]
            log.info("unloading %s (least recently used) to make room for %s", victim, name)
            async with entry.lock:
                await self._unload_versions(entry)

    async def _load_versions(self, source: ModelSource) -> dict[int, ServedModel]:
        if source.error:
            raise ModelLoadError(f"model {source.name!r}: {source.error}")
        selected = source.config.version_policy.select(list(source.versions))
        if not selected:
            raise ModelLoadError(f"model {source.name!r} has no version folder to load")
        if source.config.pipeline is not None:
            versions = {v: self._pipeline_version(source, v) for v in selected}
            await self._advise_pipeline(source, list(versions.values()))
            return versions
        loop = asyncio.get_running_loop()
        loaded: dict[int, ServedModel] = {}
        try:
            for version in selected:
                served = await loop.run_in_executor(self.executor, self._build, source, version)
                try:
                    served.serve(self.executor, self.threads)
                except BaseException:  # a setting it serves with is wrong: free what loaded
                    await loop.run_in_executor(self.executor, served.close)
                    raise
                loaded[version] = served
        except BaseException:
            await self._retire(loaded.values())
            raise
        return loaded

    def _build(self, source: ModelSource, version: int) -> ServedModel:
        """On a worker thread: read the version from disk and build what serves it."""
        calls = self.calls(source.name) if self.calls is not None else None
        loaded = load_version(source, version, self.trust_pickle, calls, self.goal)
        try:
            return ServedModel(
                loaded.name, loaded.version, loaded.config, loaded.runtime, self.watch
            )
        except BaseException:
            loaded.runtime.unload()
            raise

    async def _unload_versions(self, entry: ModelEntry) -> None:
        versions, entry.versions = entry.versions, {}
        entry.alone = False
        entry.needed_by.clear()
        entry.state, entry.reason = UNAVAILABLE, "unloaded"
        await self._retire(versions.values())
        if versions:
            self.heap.request()  # its reference cycles freed, not kept frozen

    async def _retire(self, versions: Iterable[ServedModel]) -> None:
        """Refuse what waits, let the leases end, then free each version."""
        loop = asyncio.get_running_loop()
        for served in versions:
            served.stop()
            await served.drain()
            await loop.run_in_executor(self.executor, served.close)

    def _check_control(self, action: str) -> None:
        if self.control_mode not in ("explicit", "ondemand"):
            raise FailedPrecondition(
                f"cannot {action} models in model control mode {self.control_mode!r}; "
                "start the server with --model-control-mode explicit"
            )

    # ---- pipelines -------------------------------------------------------------------------

    def pipelines_using(self, name: str) -> list[str]:
        """The loaded pipelines that have `name` as a step."""
        return sorted(
            e.name
            for e in list(self.entries.values())
            if e.versions and any(name in uses(v.pipeline) for v in e.versions.values())
        )

    def _check_not_a_step(self, name: str, action: str) -> None:
        users = self.pipelines_using(name)
        if users:
            raise FailedPrecondition(
                f"cannot {action} model {name!r}: it is a step of the loaded ensemble "
                f"{', '.join(users)}; unload the ensemble first"
            )

    def _steps_estimate(self, pipeline: PipelineSpec) -> int:
        steps = [self.entries.get(m) for m in pipeline.models]
        return sum(
            served_estimate(e.source.config, e.source.versions)
            for e in steps
            if e is not None and not e.versions
        )

    async def _load_steps(self, entry: ModelEntry, options: LoadOptions | None) -> None:
        """Load a pipeline's step models that are not loaded yet, each for this pipeline (a
        pipeline whose steps lead back to it is refused)."""
        entry.source = await asyncio.to_thread(self._reread, entry.source)
        config = entry.source.config
        if options is not None and options.config is not None:
            config = _override(config, options.config, entry.name)
        if config.pipeline is None:
            return
        chain = _LOADING.get()
        if entry.name in chain:
            cycle = " -> ".join([*chain, entry.name])
            raise ModelLoadError(f"ensembles use each other in a cycle: {cycle}")
        token = _LOADING.set((*chain, entry.name))
        try:
            await self._load_each_step(entry, config.pipeline)
        finally:
            _LOADING.reset(token)

    async def _load_each_step(self, entry: ModelEntry, pipeline: PipelineSpec) -> None:
        budget = self.residency.memory_budget
        needed = await asyncio.to_thread(self._steps_estimate, pipeline) if budget else 0
        if needed > budget:
            raise ModelLoadError(
                f"ensemble {entry.name!r}: its steps not loaded yet need about "
                f"{needed / 2**20:.0f} MiB, more than the memory budget (--memory-budget)"
            )
        for index, step in enumerate(pipeline.steps):  # all known before any loads
            if step.model not in self.entries or step.model == entry.name:
                entry.state, entry.reason = UNAVAILABLE, f"no step model {step.model!r}"
                raise ModelLoadError(
                    f"ensemble {entry.name!r} {step.describe(index)}: no such model in the "
                    "repository"
                )
        for index, step in enumerate(pipeline.steps):
            found = self.entries[step.model]
            try:
                async with found.lock:  # a load of it under way ends first
                    loaded = bool(found.versions)
                if not loaded:
                    await self.load(step.model, _internal=True, _for=entry.name)
            except ModelyardError as exc:
                error = ModelLoadError(
                    f"ensemble {entry.name!r} {step.describe(index)} did not load: {exc.message}"
                )
                if not entry.versions:
                    entry.state, entry.reason = UNAVAILABLE, error.message
                raise error from exc

    def _pipeline_version(self, source: ModelSource, version: int) -> ServedModel:
        """A pipeline version checked against its loaded step models."""
        pipeline = source.config.pipeline
        assert pipeline is not None
        configs = []
        for index, step in enumerate(pipeline.steps):
            wanted = None if step.version == LATEST else str(step.version)
            try:
                configs.append(self.get(step.model, wanted).config)
            except ModelyardError as exc:
                raise ModelLoadError(
                    f"ensemble {source.name!r} {step.describe(index)}: {exc.message}"
                ) from exc
        return ServedModel(source.name, version, resolve(source.config, configs), None)

    async def _advise_pipeline(self, source: ModelSource, versions: list[ServedModel]) -> None:
        """The advisor's notes on a loaded pipeline (memory, steps to merge or split) as its
        versions' reasons, and in the log."""
        config = source.config
        assert config.pipeline is not None
        steps = {m: (self.get(m).config, self.entries[m].source) for m in config.pipeline.models}
        before = {
            m for m in steps if self.entries[m].alone or self.entries[m].needed_by - {source.name}
        }
        advice = await asyncio.to_thread(served_advice, config, steps, before)
        reasons = advised_reasons(advice)
        for served in versions:
            served.config.reasons.update(reasons)
        for note in advice.notes:
            log.info("ensemble %s: the advisor says %s", source.name, note.text)

    async def _release_steps(self, entry: ModelEntry) -> None:
        """After a pipeline unloads: unload its steps that were loaded only for it."""
        pipeline = entry.source.config.pipeline
        for name in pipeline.models if pipeline is not None else []:
            step = self.entries.get(name)
            if step is None or not step.versions:
                continue
            step.needed_by.discard(entry.name)
            if step.alone or step.needed_by or self.pipelines_using(name):
                continue
            log.info("unloading %s, loaded only as a step of %s", name, entry.name)
            async with step.lock:
                await self._unload_versions(step)
            await self._release_steps(step)

    # ---- the repository's entries ----------------------------------------------------------

    async def register(self, name: str) -> ModelEntry:
        """Find a model that appeared on disk (pulled, copied) and list it, not loaded. The
        name must be a model name (never a path or pattern); the disk is read on a thread."""
        check_name(name)
        source = await asyncio.to_thread(self._find_on_disk, name)
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

    async def _entry_for_load(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        return await self.register(name)

    def _find_on_disk(self, name: str) -> ModelSource | None:
        """The entry called `name` in a repository folder: `NAME/` or `NAME.<suffix>` of a
        file a runtime reads (looked up by name, never listed or globbed)."""
        suffixes = runtime_suffixes(None)
        for root in self.roots:
            for candidate in [root / name, *(root / f"{name}{s}" for s in suffixes)]:
                if candidate.exists():
                    source = read_entry(candidate)
                    if source is not None and source.name == name:
                        return source
        return None

    def _reread(self, current: ModelSource) -> ModelSource:
        return reread(current)

    # ---- pull, copy, delete ----------------------------------------------------------------

    async def copy(self, source: str, destination: str) -> None:
        store = self._writable("copy")
        check_name(destination)
        if destination in self.entries:
            raise InvalidArgument(f"a model named {destination!r} already exists; delete it first")
        await store.copy(self.entry(source).source.path, source, destination)
        await self.register(destination)

    async def delete(self, name: str) -> None:
        store = self._writable("delete")
        path = self.entry(name).source.path
        if path.parent != store.root:
            raise FailedPrecondition(
                f"model {name!r} is in {path.parent}; pull, copy and delete change only the "
                f"first repository folder ({store.root})"
            )
        self._check_not_a_step(name, "delete")
        await self.forget(name)
        await store.remove(path)
        log.info("deleted model %s (%s)", name, path)

    def pull(self, spec: str, name: str | None = None) -> AsyncGenerator[Progress, None]:
        """Progress of pulling the model `spec` names (a path on this machine or a model
        package) into the repository as `name`; a model of that name is replaced."""
        return self._writable("pull").pull(spec, name, self._install, self.pull_policy)

    async def _install(self, staged: Path, name: str) -> None:
        store = self._writable("pull")
        if name in self.entries:  # a new pull replaces the model
            old = self.entry(name).source.path
            await self.forget(name)
            await store.remove(old)
        store.place(staged, name)
        await self.register(name)

    def _writable(self, action: str) -> ModelStore:
        if self.control_mode == "none" or self.store is None:
            raise FailedPrecondition(
                f"cannot {action} models in model control mode 'none' (models load only at "
                "start); start the server with --model-control-mode ondemand"
            )
        return self.store


def _text_cards(sources: list[ModelSource]) -> list[ModelCard]:
    return [describe(s) for s in sorted(sources, key=lambda s: s.name) if is_text_model(s)]


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
