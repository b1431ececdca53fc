"""Checkpoints restore weights, optimizers, statistics and the replay contents; training goes on."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from ray.rllib.algorithms.algorithm import Algorithm

from drive_rllib.algorithm import DRIVE
from drive_rllib.algorithm.drive import REPLAY_FILE
from drive_rllib.replay.storage import FIELDS
from tests.algorithm.helpers import (
    MODULE_ID,
    assert_same_optimizer_states,
    learner_module_states,
    learner_optimizer_states,
)

pytestmark = pytest.mark.ray

T, C = 50, 4


def test_checkpoint_round_trip_and_training_continues(
    ray_instance, tiny_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    algo = tiny_config(num_env_runners=1).build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        sampled = result["num_env_steps_sampled_lifetime"]
        # A relative path works too (RLlib's own save_to_path needs an absolute one).
        path = algo.save_to_path("checkpoint")
        replay_state = ray.get(algo.replay_actor.get_state.remote())
        module_state = learner_module_states(algo)[0]
        optimizer_state = learner_optimizer_states(algo)[0]
    finally:
        algo.stop()
    assert path == str(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / REPLAY_FILE).is_file()
    assert replay_state["size"] == sampled == 2 * T
    # The entropy floor's weight moved away from its initial 1.0 (log 0).
    assert module_state["nets.entropy_floor.log_weight"] != 0.0

    restored = Algorithm.from_checkpoint(path)
    try:
        assert isinstance(restored, DRIVE)
        assert_restored(restored, replay_state, module_state)
        assert_same_optimizer_states(learner_optimizer_states(restored)[0], optimizer_state)
        # The runners act with the restored pi_theta and normaliser.
        (runner_state,) = restored.env_runner_group.foreach_env_runner(
            lambda runner: {k: v.numpy().copy() for k, v in runner.module.state_dict().items()},
            local_env_runner=False,
        )
        for key, value in runner_state.items():
            np.testing.assert_array_equal(value, module_state[key], err_msg=key)

        # Training continues from where it stopped: no second warm-up, no lost rows.
        result = restored.train()
        assert result["num_env_steps_sampled_lifetime"] == sampled + T
        assert result["training/warmup"] == 0.0
        assert result["training/update_steps"] == C
        assert ray.get(restored.replay_actor.size.remote()) == sampled + T
        # The update counter (it schedules the ensemble ranking) was restored too.
        assert result["learners"][MODULE_ID]["training/update_steps_lifetime"] == 3 * C

        # Restoring into a running algorithm replaces what it learned and collected since.
        restored.restore_from_path("checkpoint")
        assert_restored(restored, replay_state, module_state)
        assert restored.train()["num_env_steps_sampled_lifetime"] == sampled + T
    finally:
        restored.stop()


def assert_restored(algo, replay_state, module_state) -> None:
    """The replay contents, counters and sampler state; weights, psi_bar, normaliser
    sums, elites, held-out errors, entropy weight and update counter."""
    restored_replay = ray.get(algo.replay_actor.get_state.remote())
    for name in FIELDS:
        np.testing.assert_array_equal(restored_replay[name], replay_state[name], err_msg=name)
    for name in ("size", "cursor", "total_added", "rng_state"):
        assert restored_replay[name] == replay_state[name], name
    restored_module = learner_module_states(algo)[0]
    assert set(restored_module) == set(module_state)
    for key, value in module_state.items():
        np.testing.assert_array_equal(restored_module[key], value, err_msg=key)
