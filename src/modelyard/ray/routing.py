"""The request router of text generators' deployments: prefix/session affinity, then load.

The ingress names each text-generation request's prefix (`affinity.affinity_key`) and sends
it as the call's Ray Serve session id (`handle.options(session_id=...)`); Ray hands every
call to the deployment's router in the ingress process, which picks the replica. This one
ranks the key's replica first (`affinity.preferred`, rendezvous hashing over the live
replicas), so a chat's turns land where its earlier turns left their KV cache, and Ray's own
choice (power of two choices, the less loaded of two, local replicas first) second. Ray
passes over the first rank when that replica is full (`max_ongoing_requests`); this router
also drops it while its queue holds `limit` requests (the model's sequence slots): past that a
request would wait for a slot there, and reading its prefix again elsewhere costs less than
waiting. So affinity bends to load instead of building a hot spot.

A request with no key (no prompt, not a text-generation route) is routed by Ray's choice
alone. Deployments of other models keep Ray's default router (`scaling.py` sets this one on
text generators only).
"""

from __future__ import annotations

from typing import Any

# Ray's default router, whose choice ranks second; not in ray.serve.request_router's exports
from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import (
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

from modelyard.ray.affinity import preferred


# without Ray installed (mypy of a clone without the extra) its classes are Any
class AffinityRouter(LocalityMixin, MultiplexMixin, RequestRouter):  # type: ignore[misc, unused-ignore]
    """Ranks a keyed request's replica first, then Ray's power-of-two choice. Without
    `FIFOMixin`: the replica found for a request goes to that request, not to the oldest
    waiting one (whose key may name another replica)."""

    limit = 0

    def initialize_state(self, **kwargs: Any) -> None:
        """`limit`: requests the key's replica may hold before affinity yields (0: only
        Ray's `max_ongoing_requests`)."""
        self.limit = int(kwargs.pop("limit", 0))
        if kwargs:
            raise TypeError(f"AffinityRouter takes only `limit`, not {sorted(kwargs)}")

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        # Ray's own choice, run on this router's state (as Ray's prefix-aware router does)
        choose = PowerOfTwoChoicesRequestRouter.choose_replicas
        by_load: list[list[RunningReplica]] = await choose(
            self,  # type: ignore[arg-type, unused-ignore]
            candidate_replicas,
            pending_request,
        )
        key = pending_request.metadata.session_id if pending_request is not None else ""
        if not key or not candidate_replicas:
            return by_load
        replicas = {replica.replica_id.unique_id: replica for replica in candidate_replicas}
        choice = replicas[str(preferred(key, replicas))]
        if self._crowded(choice):
            return by_load
        return [[choice], *by_load]

    def _crowded(self, replica: RunningReplica) -> bool:
        """Whether the replica holds `limit` requests, as far as the router last heard (an
        unknown queue is not crowded: Ray probes it before sending)."""
        queued = self.replica_queue_len_cache.get(replica.replica_id)
        return self.limit > 0 and queued is not None and queued >= self.limit
