"""Fixtures of the algorithm tests: a private local Ray instance and tiny DRIVE configs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drive_rllib.tiny import TINY_NETWORKS

# Ray 2.60 turns on token authentication for new local clusters unless this is set;
# these tests start their own throwaway cluster, so switch it off explicitly.
os.environ["RAY_AUTH_MODE"] = "disabled"


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """A private local Ray instance (2 CPUs) for one test module; never attaches to another."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; refusing to share it.")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


TINY_TRAINING: dict[str, Any] = {
    **TINY_NETWORKS,
    "horizon": 2,
    "num_samples": 1,
    "updates_per_iteration": 4,
    "env_steps_per_iteration": 50,
    "num_warmup_steps": 50,
    "model_eval_interval": 2,
}


@pytest.fixture
def tiny_config() -> Callable[..., Any]:
    """Factory of a DRIVEConfig on Pendulum-v1 with tiny networks; kwargs override training()."""

    def make(num_env_runners: int = 0, num_learners: int = 0, **training: Any) -> Any:
        from drive_rllib.algorithm import DRIVEConfig

        return (
            DRIVEConfig()
            .environment("Pendulum-v1")
            .env_runners(num_env_runners=num_env_runners)
            .learners(
                num_learners=num_learners,
                # Fractional CPUs: two Learners and the driver fit a 2-core machine.
                num_cpus_per_learner=0.5 if num_learners else "auto",
            )
            .debugging(seed=0)
            .training(**{**TINY_TRAINING, **training})
        )

    return make
