"""A model's config -> the options of its Ray Serve deployment. Pure: no Ray import, so the
mapping is tested (and `modelyard list` could show it) without a cluster.

- `instance_group` count (model.yaml `instances`) -> `num_replicas`, spread over the cluster by
  Ray. Each replica still reads the same config, so it also admits that many executions at
  once (its batcher's slots): one process per replica, as Triton runs one server per node.
- an `autoscaling` section (model.yaml) -> Ray's `autoscaling_config`, replacing the fixed
  count: min/max replicas, target requests per replica, up/down delays. The signal is
  modelyard's own queue depth (requests inside the model, queued or running), which each
  replica reports (`ModelReplica.record_autoscaling_stats`) and `queue_depth_policy` reads:
  Ray's own signal, its calls in flight, undercounts modelyard, whose ingress sends a group of
  requests in one call.
- `max_ongoing_requests` (what Ray lets one replica hold) = the model's batch: Ray's default
  (5) would cap every batch the replica's batcher forms at 5 rows' worth of requests.
- `ray_actor_options`: the CPU threads the model runs with, and the advisor's memory estimate
  as the replica's memory reservation, so Ray places a replica where it fits.
- a text generator's `request_router_config`: modelyard's affinity router (`routing.py`), a
  chat's turns to the replica holding its prefix while that replica has a free sequence slot
  (`n_seq_max`); other models keep Ray's default router.
- a rolling update stops an old replica before it starts a new one (Ray's default,
  `max_surge_percent: 0`): a surge replica that the cluster cannot fit waits, and with it the
  whole update, for good. A model with one replica holds its requests in Ray's router meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.spec.config import ModelConfig

#: A model whose config leaves max_batch_size out gets 256 when it is loaded (autocomplete);
#: the same bound keeps Ray from starving its batcher before that load has happened.
DEFAULT_BATCH = 256
#: Requests one replica holds when the model takes no batch dimension: enough to keep its one
#: instance busy while the next request crosses the object store.
UNBATCHED_ONGOING = 8

#: The router of text generators' deployments (imported by Ray, in the ingress process).
AFFINITY_ROUTER = "modelyard.ray.routing.AffinityRouter"
#: Sequence slots of a text generator whose config leaves `n_seq_max` to its runtime.
DEFAULT_SLOTS = 8
#: Extra replicas a rolling update starts before stopping old ones, in percent of the target
#: count: none (see above; 25 stalled an update on a one-node Ray whose CPUs were reserved).
SURGE_PERCENT = 0

#: model.yaml `autoscaling` keys -> Ray Serve's autoscaling_config keys.
AUTOSCALING_KEYS = {
    "min_replicas": "min_replicas",
    "max_replicas": "max_replicas",
    "initial_replicas": "initial_replicas",
    "target_ongoing_requests": "target_ongoing_requests",
    "upscale_delay_s": "upscale_delay_s",
    "downscale_delay_s": "downscale_delay_s",
    # how far back the signal is averaged (Ray's default: 30 s), and how often replicas report
    # it (Ray's default: 10 s; deprecated in Ray but still the only knob in 2.60)
    "look_back_period_s": "look_back_period_s",
    "metrics_interval_s": "metrics_interval_s",
}
#: The autoscaling signal each replica reports: requests inside its model now.
QUEUE_METRIC = "modelyard_queue_depth"
#: `queue_depth_policy`'s import path, as Ray's controller loads it.
QUEUE_POLICY = "modelyard.ray.scaling:queue_depth_policy"


@dataclass(frozen=True)
class Placement:
    """What the advisor knows of a model before it loads, for Ray's placement."""

    #: Estimated resident bytes of one replica (0: not estimated).
    memory_bytes: int = 0
    #: CPU threads one execution uses (the runtime's intra-op threads).
    threads: int = 1
    gpus: float = 0.0
    #: Whether it generates text (its deployment routes by prefix affinity).
    generates_text: bool = False
    #: The sequences it generates at once (a text generator's `n_seq_max`).
    slots: int = DEFAULT_SLOTS


def deployment_options(config: ModelConfig, placement: Placement) -> dict[str, Any]:
    """`serve.deployment(...).options(**these)` for the model `config` describes."""
    options: dict[str, Any] = {
        "max_ongoing_requests": max_ongoing_requests(config),
        "ray_actor_options": actor_options(placement),
        # a replica is healthy while its model reads ready (a restarting worker, hung instances)
        "health_check_period_s": 5.0,
        "health_check_timeout_s": 10.0,
        "max_surge_percent": SURGE_PERCENT,
    }
    if placement.generates_text:
        options["request_router_config"] = {
            "request_router_class": AFFINITY_ROUTER,
            "request_router_kwargs": {"limit": placement.slots},
        }
    autoscaling = autoscaling_config(config)
    if autoscaling is None:
        options["num_replicas"] = max(1, config.instance_count)
    else:
        options["autoscaling_config"] = autoscaling
    return options


def max_ongoing_requests(config: ModelConfig) -> int:
    """Requests Ray lets one replica hold: a full batch, so batches still form inside it."""
    if config.max_batch_size > 0:
        return config.max_batch_size
    if config.inputs and all(spec.dims[:1] != [-1] for spec in config.inputs):
        return UNBATCHED_ONGOING  # inputs written without a batch dimension
    return DEFAULT_BATCH


def autoscaling_config(config: ModelConfig) -> dict[str, Any] | None:
    """Ray's autoscaling_config from model.yaml's `autoscaling` section (None: fixed count)."""
    section = config.extra.get("autoscaling")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InvalidArgument(f"model {config.name!r}: autoscaling must be a mapping")
    unknown = set(section) - set(AUTOSCALING_KEYS)
    if unknown:
        raise InvalidArgument(
            f"model {config.name!r}: unknown autoscaling keys {sorted(unknown)}; "
            f"known: {sorted(AUTOSCALING_KEYS)}"
        )
    out: dict[str, Any] = {
        AUTOSCALING_KEYS[key]: _number(config.name, key, value) for key, value in section.items()
    }
    low, high = out.setdefault("min_replicas", 1), out.setdefault("max_replicas", 1)
    if not 0 <= low <= high or high < 1:
        raise InvalidArgument(
            f"model {config.name!r}: autoscaling needs 0 <= min_replicas <= max_replicas and "
            f"max_replicas >= 1, got {low} and {high}"
        )
    out["policy"] = {"policy_function": QUEUE_POLICY}
    return out


def queue_depth_policy(ctx: Any) -> tuple[float, dict[str, Any]]:
    """Ray's autoscaling policy on modelyard's signal: the replicas it takes to hold the
    requests inside the model at `target_ongoing_requests` each, plus the calls Ray holds back
    for want of a free replica. `ctx` is Ray's `AutoscalingContext`; Ray bounds the answer by
    min/max replicas and applies the up and down delays. Until replicas have reported, Ray's
    own count of requests is used."""
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    reported = (ctx.aggregated_metrics or {}).get(QUEUE_METRIC)
    if reported:
        inside = sum(reported.values()) + (ctx.total_queued_requests or 0)
    else:
        inside = ctx.total_num_requests
    target = ctx.config.get_target_ongoing_requests()
    return inside / target, {}


def actor_options(placement: Placement) -> dict[str, Any]:
    """A replica's reservation: its threads as CPUs, its estimate as memory, GPUs if any."""
    options: dict[str, Any] = {"num_cpus": max(1, placement.threads)}
    if placement.memory_bytes > 0:
        options["memory"] = placement.memory_bytes
    if placement.gpus > 0:
        options["num_gpus"] = placement.gpus
    return options


def threads_of(config: ModelConfig) -> int:
    """The intra-op threads the advisor (or the config) gave the model; 1 when unsaid."""
    return _count(config, "intra_op_thread_count", 1)


def slots_of(config: ModelConfig) -> int:
    """The sequences a text generator decodes at once (`n_seq_max`; the runtimes' 8)."""
    return _count(config, "n_seq_max", DEFAULT_SLOTS)


def _count(config: ModelConfig, parameter: str, unsaid: int) -> int:
    value = config.parameters.get(parameter, "")
    return int(value) if value.isdigit() and int(value) > 0 else unsaid


def _number(model: str, key: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgument(
            f"model {model!r}: autoscaling {key} must be a number >= 0, got {value!r}"
        )
    return value
