"""`tune: auto` in a model's config: the server tunes it in the background after it loads
(in-process only: the server's own front is serving) and reloads it with the pick when done.
Readiness never waits for it; the model serves with the rules' pick meanwhile. A model whose
pick is cached already (this artifact, machine, version and goal) loads with it and is not
measured again. Models loaded later (the repository API, polling, on demand) are looked for
every WATCH_S seconds."""

from __future__ import annotations

import asyncio
import logging
import threading

from modelyard.advisor.apply import TUNED_PREFIX
from modelyard.core.models import ModelService
from modelyard.errors import ModelyardError
from modelyard.settings import parse_duration
from modelyard.tuning.search import TuneOptions, tune

log = logging.getLogger("modelyard.tune")

#: Search time of one model unless its `tune_budget` parameter says otherwise.
DEFAULT_BUDGET_S = 60.0
#: How often loaded models are looked at for a `tune: auto` not yet served.
WATCH_S = 1.0


def wanted(models: ModelService) -> list[str]:
    """Loaded models whose config asks for tuning and that do not run a tuned pick yet."""
    names = []
    for name, entry in models.entries.items():
        if entry.source.config.parameters.get("tune") != "auto" or not entry.versions:
            continue
        config = entry.versions[max(entry.versions)].config
        if not any(reason.startswith(TUNED_PREFIX) for reason in config.reasons.values()):
            names.append(name)
    return names


async def watch(models: ModelService, goal: str, trust_pickle: bool) -> None:
    """For the server's life: tune each loaded model that asks for it, once per load."""
    tried: dict[str, object] = {}  # name -> the loaded version tried (not again if it failed)
    while True:
        for name in wanted(models):
            versions = models.entries[name].versions
            loaded = versions[max(versions)] if versions else None
            if loaded is None or tried.get(name) is loaded:
                continue
            tried[name] = loaded
            await autotune(models, goal, trust_pickle, [name])
        await asyncio.sleep(WATCH_S)


async def autotune(
    models: ModelService, goal: str, trust_pickle: bool, names: list[str] | None = None
) -> None:
    """Tune each model that asks for it (of `names`), one after the other, and apply each pick."""
    for name in wanted(models) if names is None else names:
        source = models.entries[name].source
        try:
            budget = parse_duration(source.config.parameters.get("tune_budget")) or DEFAULT_BUDGET_S
        except ValueError as exc:
            log.warning("model %s: tune_budget: %s; tuning it for %gs", name, exc, DEFAULT_BUDGET_S)
            budget = DEFAULT_BUDGET_S
        options = TuneOptions(goal=goal, budget_s=budget, front=False, trust_pickle=trust_pickle)
        log.info("model %s: tuning in the background (tune: auto, %gs)", name, budget)
        stop = threading.Event()
        try:
            result = await asyncio.to_thread(tune, source, options, None, log.info, stop)
            await models.reload(name)
        except asyncio.CancelledError:  # shutting down: the search ends after its trial
            stop.set()
            raise
        except ModelyardError as exc:
            log.warning("model %s: tuning failed, it keeps the rules' pick: %s", name, exc)
            continue
        log.info("model %s: tuned and reloaded: %s", name, result.pick.reason)
