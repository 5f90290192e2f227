"""The text generators' request router over stand-in replicas: Ray's own routing loop
(`RequestRouter`) around `AffinityRouter.choose_replicas`, no cluster. Ray's
`FakeRunningReplica` answers the router's queue-length probes."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

pytest.importorskip("ray.serve")

from ray.serve._private.common import DeploymentHandleSource, RequestMetadata
from ray.serve._private.test_utils import FAKE_REPLICA_DEPLOYMENT_ID, FakeRunningReplica
from ray.serve.request_router import PendingRequest

from modelyard.ray.affinity import preferred
from modelyard.ray.routing import AffinityRouter

IDS = itertools.count()
FULL = 10  # each stand-in's max_ongoing_requests


def _router(limit: int = 4) -> tuple[AffinityRouter, dict[str, FakeRunningReplica]]:
    router = AffinityRouter(
        deployment_id=FAKE_REPLICA_DEPLOYMENT_ID,
        handle_source=DeploymentHandleSource.UNKNOWN,
        use_replica_queue_len_cache=True,
    )
    router.initialize_state(limit=limit)
    replicas = {f"r{i}": FakeRunningReplica(f"r{i}", max_ongoing_requests=FULL) for i in range(3)}
    for replica in replicas.values():
        replica.set_queue_len_response(0)
    router.update_replicas(list(replicas.values()))
    return router, replicas


async def _route(router: AffinityRouter, key: str = "") -> str:
    metadata = RequestMetadata(request_id="r", internal_request_id=str(next(IDS)), session_id=key)
    request = PendingRequest(args=[], kwargs={}, metadata=metadata)
    replica = await router._choose_replica_for_request(request)
    return str(replica.replica_id.unique_id)


@pytest.mark.anyio
async def test_a_key_goes_to_its_replica_every_time() -> None:
    router, replicas = _router()
    for key in ("chat-a", "chat-b", "chat-c", "chat-d"):
        assert {await _route(router, key) for _ in range(5)} == {preferred(key, replicas)}


@pytest.mark.anyio
async def test_requests_without_a_key_go_by_load() -> None:
    router, _ = _router()
    assert len(Counter([await _route(router) for _ in range(40)])) == 3


@pytest.mark.anyio
async def test_a_misspelt_router_setting_is_refused() -> None:
    router, _ = _router()
    with pytest.raises(TypeError, match="limt"):
        router.initialize_state(limt=4)


@pytest.mark.anyio
async def test_a_full_or_crowded_replica_yields_its_keys_to_the_others() -> None:
    router, replicas = _router(limit=4)
    key = "chat-a"
    home = str(preferred(key, replicas))
    replicas[home].set_queue_len_response(FULL)  # at max_ongoing_requests: Ray passes it over
    assert {await _route(router, key) for _ in range(10)} <= set(replicas) - {home}

    router, replicas = _router(limit=4)
    for replica in replicas.values():  # the router has heard from every replica (under load)
        _holds(router, replica, 0)
    _holds(router, replicas[home], 4)  # its slots busy, though not full
    assert {await _route(router, key) for _ in range(10)} <= set(replicas) - {home}
    _holds(router, replicas[home], 3)  # one free again
    assert await _route(router, key) == home


def _holds(router: AffinityRouter, replica: FakeRunningReplica, requests: int) -> None:
    """The replica holds `requests`, as it tells the router's probes and as its cache says."""
    replica.set_queue_len_response(requests)
    router.on_new_queue_len_info(replica.replica_id, requests)
