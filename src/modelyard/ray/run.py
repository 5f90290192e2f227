"""`modelyard serve REPO --ray [ADDRESS]`: deploy the repository's application on a Ray
cluster and serve modelyard's front from the ingress on `--host`/`--port`, and KServe v2 gRPC
on `--grpc-port`, until interrupted.

Ray's own HTTP and gRPC proxies are not started (`proxy_location: Disabled`): clients reach
the ingress replica's own ports, which this command places on the node it runs on, so the
addresses it prints are where they connect. `serve run modelyard.ray:build_app` keeps Ray's
proxies.

SIGHUP deploys the repository again: a model with a new version folder or a changed config is
rolled onto it replica by replica, the others keep running (`app.model_version`).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import ray
from ray import serve

from modelyard.fronts.kserve_grpc import grpc_address
from modelyard.ray.app import APP_NAME, build_app
from modelyard.settings import Settings

log = logging.getLogger("modelyard.ray")

#: `--ray` without an address: a Ray instance of this machine's own, started here.
LOCAL = "local"


def run(settings: Settings, address: str) -> None:
    """Deploy and serve until SIGINT or SIGTERM, deploying again on SIGHUP; then delete the
    application."""
    ray.init(address=None if address == LOCAL else address, include_dashboard=False)
    try:
        serve.start(proxy_location="Disabled")
        here = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call, unused-ignore]
        serve.run(build_app(app_args(settings, here)), name=APP_NAME)
        log.info(
            "modelyard on Ray (%s): models %s; serving on http://%s:%d, gRPC on %s",
            address,
            ", ".join(sorted(serve.status().applications[APP_NAME].deployments)),
            settings.host,
            settings.http_port,
            grpc_address(settings.host, settings.grpc_port),
        )
        while _wait_for_signal() == signal.SIGHUP:
            log.info("SIGHUP: deploying the repository again; models that changed roll")
            serve.run(build_app(app_args(settings, here)), name=APP_NAME)
        serve.delete(APP_NAME)
    finally:
        ray.shutdown()


def app_args(settings: Settings, node_ip: str) -> dict[str, Any]:
    """`build_app`'s args from the command line's settings; the ingress on this node."""
    models = [m for m in settings.load_models if m != "*"]
    args: dict[str, Any] = {
        "repository": str(settings.repositories[0]),
        "host": settings.host,
        "port": settings.http_port,
        "grpc_port": settings.grpc_port,
        "grpc_max_message_bytes": settings.grpc_max_message_bytes,
        "trust_pickle": settings.trust_pickle,
        "workers": settings.workers,
        "max_request_bytes": settings.max_request_bytes,
        "ingress_node": node_ip,
    }
    if models:
        args["models"] = ",".join(models)
    return args


def _wait_for_signal() -> int:
    """The first of SIGINT, SIGTERM or SIGHUP to arrive."""
    got: list[int] = []
    arrived = threading.Event()

    def handler(signum: int, _: object) -> None:
        got.append(signum)
        arrived.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)
    while not arrived.wait(0.5):  # wakes up, so the handlers run however Ray set up the thread
        pass
    return got[0]
