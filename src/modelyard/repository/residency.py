"""Which models stay loaded: keep-alive expiry, a cap on loaded models, and a memory budget
with least-recently-used eviction of idle models — Ollama's model scheduling, for every kind
of model. A model serving a request (or a stream) is never evicted."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelyard.errors import ModelLoadError, ModelyardError, ResourceExhausted
from modelyard.spec.config import ModelConfig

log = logging.getLogger("modelyard.repository")


@dataclass(frozen=True)
class ResidencyPolicy:
    #: Seconds an idle model stays loaded; None keeps models until unloaded, 0 unloads at once.
    keep_alive_s: float | None = None
    #: Most models loaded at once (0: no limit).
    max_loaded: int = 0
    #: Bytes the loaded models may take by their estimates (0: no budget).
    memory_budget: int = 0


class Resident(Protocol):
    """What eviction needs to know of a loaded model."""

    estimate: int
    keep_alive_s: float | None

    @property
    def name(self) -> str: ...

    @property
    def busy(self) -> bool: ...

    @property
    def last_used(self) -> float: ...


def served_estimate(config: ModelConfig, versions: dict[int, Path]) -> int:
    """The estimate of serving every version of `versions` the config's policy selects."""
    selected = config.version_policy.select(list(versions))
    return sum(estimate_bytes(config, versions[v]) for v in selected)


def estimate_bytes(config: ModelConfig, artifact: Path) -> int:
    """The advisor's estimate of serving this model; the file size when it cannot tell."""
    from modelyard.advisor.apply import estimate_for

    try:
        return int(estimate_for(config, artifact).total)
    except (ModelyardError, OSError, ValueError):
        size = artifact.stat().st_size if artifact.is_file() else 0
        return int(size * 1.2)


def human(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def victims(
    policy: ResidencyPolicy, loaded: Sequence[Resident], name: str, needed: int
) -> list[str]:
    """Models to unload, least recently used first, so `name` (needing `needed` bytes) fits.
    Raises ResourceExhausted when it can never fit or every model in the way is busy."""
    budget = policy.memory_budget
    if budget and needed > budget:
        raise ModelLoadError(
            f"model {name!r} needs about {human(needed)} to serve, more than the memory budget "
            f"of {human(budget)} (--memory-budget)"
        )
    others = [m for m in loaded if m.name != name]
    used = sum(m.estimate for m in others)
    count = len(others)
    chosen: list[str] = []
    for model in sorted((m for m in others if not m.busy), key=lambda m: m.last_used):
        if not _over(policy, count, used, needed):
            break
        chosen.append(model.name)
        count -= 1
        used -= model.estimate
    if _over(policy, count, used, needed):
        limit = human(budget) if budget else "unlimited"
        raise ResourceExhausted(
            f"cannot load {name!r} (about {human(needed)}): the models in the way are serving "
            f"requests ({count} loaded, {human(used)} of the {limit} budget); retry when idle"
        )
    return chosen


def _over(policy: ResidencyPolicy, count: int, used: int, needed: int) -> bool:
    if policy.max_loaded and count + 1 > policy.max_loaded:
        return True
    return bool(policy.memory_budget) and used + needed > policy.memory_budget


def expired(model: Resident, default_keep_alive: float | None, now: float | None = None) -> bool:
    keep_alive = model.keep_alive_s if model.keep_alive_s is not None else default_keep_alive
    if keep_alive is None or keep_alive < 0 or model.busy:
        return False
    return (now if now is not None else time.monotonic()) >= model.last_used + keep_alive
