"""A non-finite update step is skipped, not half-applied (a local Learner).

The Learner makes Ray calls while it builds, which would start a Ray instance of
their own: the tests use the private one of `ray_instance`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from drive_rllib.algorithm import DRIVEConfig
from drive_rllib.algorithm.batch import learner_batch
from drive_rllib.tiny import TINY_NETWORKS
from tests.algorithm.helpers import MODULE_ID, assert_same_optimizer_states, changed_groups

pytestmark = pytest.mark.ray

B = 32


def make_learner(max_skipped_updates: int = 3, **training):
    """A local Learner on Pendulum's spaces, tiny networks; ``training`` overrides."""
    config = (
        DRIVEConfig()
        .environment("Pendulum-v1")
        .debugging(seed=0)
        .training(
            **TINY_NETWORKS,
            horizon=2,
            model_eval_interval=0,
            holdout_every=0,
            max_skipped_updates=max_skipped_updates,
            **training,
        )
    )
    return config.build_learner(env=gym.make("Pendulum-v1"))


def rows(seed: int, bad_reward: float | None = None) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    batch = {
        "obs": generator.normal(size=(B, 3)).astype(np.float32),
        "action": generator.uniform(-1, 1, size=(B, 1)).astype(np.float32),
        "reward": generator.normal(size=B).astype(np.float32),
        "next_obs": generator.normal(size=(B, 3)).astype(np.float32),
        "terminated": np.zeros(B, dtype=bool),
        "truncated": np.zeros(B, dtype=bool),
    }
    if bad_reward is not None:
        batch["reward"][0] = bad_reward
    return batch


def module_state(learner) -> dict[str, np.ndarray]:
    module = learner.module[MODULE_ID].unwrapped()
    return {key: value.detach().numpy().copy() for key, value in module.state_dict().items()}


def update(learner, batch) -> dict:
    return learner.update(batch=learner_batch(batch), minibatch_size=B, num_epochs=1)


def test_a_non_finite_step_leaves_weights_optimizers_and_normaliser_bit_identical(ray_instance):
    learner = make_learner()
    update(learner, rows(0))  # Adam has state to compare from here on
    before, optimizers_before = module_state(learner), learner._get_optimizer_state()

    result = update(learner, rows(1, bad_reward=np.nan))

    after = module_state(learner)
    assert set(after) == set(before)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert_same_optimizer_states(learner._get_optimizer_state(), optimizers_before)
    assert result[MODULE_ID]["training/skipped_steps"].peek() == 1
    assert learner.num_skipped_steps == 1

    # A finite step afterwards trains as usual and counts on from where it was.
    update(learner, rows(2))
    trained = module_state(learner)
    assert changed_groups(before, trained) >= {"model", "prior", "value", "obs_normalizer"}
    assert trained["num_updates"] == before["num_updates"] + 1
    assert trained["nets.obs_normalizer.count"] == before["nets.obs_normalizer.count"] + B


def test_k_consecutive_non_finite_steps_fail_with_the_terms_named(ray_instance):
    learner = make_learner(max_skipped_updates=2)
    update(learner, rows(0, bad_reward=np.inf))
    with pytest.raises(
        FloatingPointError,
        # f_hat's target normaliser takes the inf reward in before the forward pass, so
        # the imagined returns (and the terms built on them) are non-finite too.
        match=r"2 consecutive update steps.*non-finite DRIVE loss terms \[[^]]*'model'",
    ):
        update(learner, rows(1, bad_reward=np.inf))
    nets = learner.module[MODULE_ID].unwrapped().nets
    assert torch.isfinite(nets.obs_normalizer.total).all()
    assert torch.isfinite(nets.target_normalizer.total).all()
