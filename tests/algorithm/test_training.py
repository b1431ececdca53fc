"""DRIVE training iterations on a private Ray instance: data path, DDP, runner recovery."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray

from tests.algorithm.helpers import (
    MODULE_ID,
    assert_same_optimizer_states,
    changed_groups,
    learner_module_states,
    learner_optimizer_states,
)

pytestmark = pytest.mark.ray

# One iteration of the tiny config: T=50 env steps, then C=4 updates of B=32 rows.
T, C, B = 50, 4, 32


def test_two_iterations_with_two_env_runners(ray_instance, tiny_config):
    config = tiny_config(num_env_runners=2).evaluation(
        evaluation_interval=2, evaluation_duration=1, evaluation_duration_unit="episodes"
    )
    algo = config.build_algo()
    try:
        initial = learner_module_states(algo)[0]
        results = [algo.train() for _ in range(2)]

        # Every sampled env step is in the replay actor, nothing more.
        sampled = results[-1]["num_env_steps_sampled_lifetime"]
        assert sampled == 2 * T
        assert ray.get(algo.replay_actor.size.remote()) == sampled
        assert results[-1]["replay/size"] == sampled
        pushed = algo.env_runner_group.foreach_env_runner(
            lambda runner: runner.num_transitions_pushed, local_env_runner=False
        )
        assert pushed == [T, T]

        # Warm-up (first iteration) and policy actions share the module's [-1, 1]
        # scale; Pendulum's own bounds are [-2, 2].
        stored = ray.get(algo.replay_actor.get_state.remote())
        assert np.abs(stored["action"]).max() <= 1.0
        assert stored["action"][:T].std() > 0.4  # uniform on [-1, 1] has std 0.58

        # C update steps ran in each iteration and changed every trained part.
        learner = results[-1]["learners"][MODULE_ID]
        assert learner["training/update_steps_lifetime"] == 2 * C
        assert np.isfinite(learner["loss/total"])
        assert np.isfinite(learner["model/holdout_error"])
        after = learner_module_states(algo)[0]
        assert changed_groups(initial, after) >= {
            "model",
            "posterior",
            "prior",
            "value",
            "target_value",
            "entropy_floor",
            "obs_normalizer",
        }
        assert after["nets.obs_normalizer.count"] == 2 * C * B

        # The runners act with the learner's pi_theta and normaliser.
        for runner_state in algo.env_runner_group.foreach_env_runner(
            lambda runner: {k: v.numpy().copy() for k, v in runner.module.state_dict().items()},
            local_env_runner=False,
        ):
            assert set(runner_state) == {
                key for key in after if key.startswith(("nets.prior.", "nets.obs_normalizer."))
            }
            for key, value in runner_state.items():
                np.testing.assert_array_equal(value, after[key])

        # Deterministic evaluation ran on its own runner, outside the replay.
        assert np.isfinite(results[-1]["evaluation"]["env_runners"]["episode_return_mean"])
        assert ray.get(algo.replay_actor.size.remote()) == sampled
    finally:
        algo.stop()


@pytest.mark.parametrize(
    "variant",
    [
        {},
        # The other branches of the update: every parameter must still get a gradient
        # from the one backward, or DDP fails.
        {
            "policy_update": "distill",
            "value_loss": "cross_entropy",
            "num_samples": 2,
            "entropy_floor": False,
            "termination": "none",
        },
        # Steps that do not fit f_hat: its zero gradients keep DDP's every-parameter
        # bookkeeping, and both Learners hold f_hat alike.
        {"model_fit_interval": 3},
        # Value-only steps hold every group but psi's, alike on both Learners.
        {"value_only_updates": 2},
    ],
    ids=["joint", "distill", "model_fit_interval", "value_only_updates"],
)
def test_two_learners_stay_identical(ray_instance, tiny_config, variant):
    algo = tiny_config(num_env_runners=0, num_learners=2, **variant).build_algo()
    try:
        initial = learner_module_states(algo)
        for key in initial[0]:
            np.testing.assert_array_equal(initial[0][key], initial[1][key], err_msg=key)
        for _ in range(2):
            result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] == ray.get(algo.replay_actor.size.remote())

        first, second = learner_module_states(algo)
        assert changed_groups(initial[0], first) >= {"model", "posterior", "prior", "value"}
        if variant.get("entropy_floor", True):
            assert "entropy_floor" in changed_groups(initial[0], first)
        # Weights AND buffers (normaliser sums, elites, held-out errors, psi_bar) agree.
        assert set(first) == set(second)
        for key in first:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        # The normaliser merged the rows of both learners (all-reduced sums), of every step.
        steps = 2 * (C + variant.get("value_only_updates", 0))
        assert first["nets.obs_normalizer.count"] == 2 * (steps * B)
        # The ensemble was ranked (every 2 steps) on held-out rows of both learners.
        assert np.isfinite(first["nets.model.holdout_error"]).all()

        assert_same_optimizer_states(*learner_optimizer_states(algo))
    finally:
        algo.stop()


def test_a_killed_env_runner_is_replaced_and_pushes_to_the_same_replay(ray_instance, tiny_config):
    algo = tiny_config(num_env_runners=2).env_runners(num_envs_per_env_runner=1).build_algo()
    try:
        replay_id = algo.replay_actor._actor_id.hex()
        algo.train()
        victim_id = algo.env_runner_group.healthy_env_runner_ids()[-1]
        victim = algo.env_runner_group._worker_manager.actors()[victim_id]
        ray.kill(victim, no_restart=False)

        # Sampling notices the failure; RLlib restores the runner before a later
        # training step and DRIVE hands it the replay actor.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            algo.train()
            if (
                algo.env_runner_group.num_remote_worker_restarts() >= 1
                and victim_id in algo.env_runner_group.healthy_env_runner_ids()
            ):
                break
        else:
            pytest.fail("the killed EnvRunner was not restored within 60 s")
        result = algo.train()

        replacement = algo.env_runner_group.foreach_env_runner(
            lambda runner: (runner.replay_actor_id(), runner.num_transitions_pushed),
            remote_worker_ids=[victim_id],
            local_env_runner=False,
        )
        assert len(replacement) == 1
        replacement_replay_id, replacement_pushed = replacement[0]
        assert replacement_replay_id == replay_id
        assert replacement_pushed > 0
        assert result["num_env_steps_sampled_lifetime"] == ray.get(algo.replay_actor.size.remote())
    finally:
        algo.stop()
