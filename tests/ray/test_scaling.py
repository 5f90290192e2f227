"""A model's config -> its Ray Serve deployment options (no cluster needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from modelyard.errors import InvalidArgument
from modelyard.ray.scaling import (
    AFFINITY_ROUTER,
    DEFAULT_BATCH,
    DEFAULT_SLOTS,
    QUEUE_METRIC,
    QUEUE_POLICY,
    UNBATCHED_ONGOING,
    Placement,
    deployment_options,
    max_ongoing_requests,
    queue_depth_policy,
    slots_of,
    threads_of,
)
from modelyard.repository.config import from_yaml
from modelyard.spec.config import ModelConfig, TensorSpec


def test_instances_are_replicas_and_the_batch_is_what_a_replica_holds() -> None:
    config = from_yaml({"instances": 3, "max_batch_size": 64}, "mlp")
    options = deployment_options(config, Placement(memory_bytes=50 << 20, threads=2))
    assert options["num_replicas"] == 3
    assert options["max_ongoing_requests"] == 64
    assert options["ray_actor_options"] == {"num_cpus": 2, "memory": 50 << 20}
    assert "autoscaling_config" not in options
    assert options["max_surge_percent"] == 0  # a surge replica that does not fit stalls


def test_text_generators_route_by_affinity_up_to_their_slots_other_models_by_ray() -> None:
    config = from_yaml({"parameters": {"n_seq_max": 16}}, "tiny")
    llm = deployment_options(config, Placement(generates_text=True, slots=slots_of(config)))
    assert llm["request_router_config"] == {
        "request_router_class": AFFINITY_ROUTER,
        "request_router_kwargs": {"limit": 16},
    }
    assert slots_of(from_yaml({}, "tiny")) == DEFAULT_SLOTS
    assert "request_router_config" not in deployment_options(config, Placement())


def test_an_autoscaling_section_becomes_rays_autoscaling_config() -> None:
    section = {
        "min_replicas": 0,
        "max_replicas": 4,
        "target_ongoing_requests": 32,
        "upscale_delay_s": 2,
        "downscale_delay_s": 30.5,
        "look_back_period_s": 2,
        "metrics_interval_s": 0.5,
    }
    config = from_yaml({"autoscaling": section, "instances": 2}, "mlp")
    options = deployment_options(config, Placement())
    assert options["autoscaling_config"] == {**section, "policy": {"policy_function": QUEUE_POLICY}}
    assert "num_replicas" not in options  # autoscaling replaces the fixed count
    assert options["ray_actor_options"] == {"num_cpus": 1}


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"max_replicas": 2, "bogus": 1}, "unknown autoscaling keys ['bogus']"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
        ({"max_replicas": "many"}, "max_replicas must be a number"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_a_wrong_autoscaling_section_is_refused_saying_why(section: object, says: str) -> None:
    config = from_yaml({"autoscaling": section}, "mlp")
    with pytest.raises(InvalidArgument, match="mlp") as caught:
        deployment_options(config, Placement())
    assert says in caught.value.message


def test_max_ongoing_requests_follows_the_batch_dimension() -> None:
    batched = TensorSpec("x", "FP32", [-1, 4])
    fixed = TensorSpec("x", "FP32", [1, 4])
    assert max_ongoing_requests(ModelConfig("m", max_batch_size=8)) == 8
    assert max_ongoing_requests(ModelConfig("m", inputs=[batched])) == DEFAULT_BATCH
    assert max_ongoing_requests(ModelConfig("m")) == DEFAULT_BATCH  # completed at load
    assert max_ongoing_requests(ModelConfig("m", inputs=[fixed])) == UNBATCHED_ONGOING


def test_threads_come_from_the_runtimes_intra_op_setting() -> None:
    assert threads_of(ModelConfig("m", parameters={"intra_op_thread_count": "4"})) == 4
    assert threads_of(ModelConfig("m", parameters={"intra_op_thread_count": "x"})) == 1
    assert threads_of(ModelConfig("m")) == 1
    assert deployment_options(ModelConfig("m"), Placement(gpus=0.5))["ray_actor_options"] == {
        "num_cpus": 1,
        "num_gpus": 0.5,
    }


@dataclass
class Target:
    """Ray's AutoscalingConfig, as far as the policy reads it."""

    target: float

    def get_target_ongoing_requests(self) -> float:
        return self.target


@dataclass
class Context:
    """Ray's AutoscalingContext, as far as the policy reads it."""

    current_num_replicas: int
    config: Target
    aggregated_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    total_num_requests: float = 0.0
    total_queued_requests: float = 0.0
    target_num_replicas: int = 1


def test_the_policy_asks_for_the_replicas_the_queue_depth_needs() -> None:
    depths = {QUEUE_METRIC: {"r1": 30.0, "r2": 18.0}}
    ctx: Any = Context(2, Target(8), depths, total_num_requests=2, total_queued_requests=2)
    assert queue_depth_policy(ctx) == (50 / 8, {})  # 48 inside the model, 2 held by Ray
    idle: Any = Context(3, Target(8), {QUEUE_METRIC: {"r1": 0.0}})
    assert queue_depth_policy(idle)[0] == 0  # Ray keeps min_replicas


def test_the_policy_counts_rays_requests_until_replicas_report() -> None:
    ctx: Any = Context(1, Target(4), {}, total_num_requests=12)
    assert queue_depth_policy(ctx)[0] == 3
    assert queue_depth_policy(Context(0, Target(4), target_num_replicas=2))[0] == 2
