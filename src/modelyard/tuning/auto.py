"""`tune: auto` in a model's config: the server tunes it in the background after it loads
(in-process only: the server's own front is serving) and reloads it with the pick when done.
Readiness never waits for it; the model serves with the rules' pick meanwhile. A model whose
pick is cached already (this artifact, machine, version and goal) loads with it and is not
measured again."""

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


async def autotune(models: ModelService, goal: str, trust_pickle: bool) -> None:
    """Tune each model that asks for it, one after the other, and apply each pick."""
    for name in wanted(models):
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
