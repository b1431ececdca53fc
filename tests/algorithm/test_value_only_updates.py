"""DHMBPO's schedule within an iteration. ``value_only_updates``: steps that fit psi alone
hold f_hat, q_phi, pi_theta and the entropy floor bit-identical, optimizers included (a
local Learner); the algorithm runs them before each iteration's C steps.
``restart_optimizers``: every learning iteration starts the Adam states of all but f_hat
afresh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drive_rllib import keys
from drive_rllib.algorithm.batch import learner_batch
from drive_rllib.algorithm.learner import RESTART_OPTIMIZERS, RESTARTED_GROUPS, VALUE_ONLY
from tests.algorithm.helpers import MODULE_ID, assert_same_optimizer_states, changed_groups
from tests.algorithm.test_skipped_update import B, make_learner, module_state, rows, update

pytestmark = pytest.mark.ray

HELD = ("model", "posterior", "prior", "entropy_floor")


def test_a_value_only_step_trains_psi_alone_and_touches_no_other_optimizer(ray_instance):
    learner = make_learner()
    update(learner, rows(0))  # every optimizer has state from here on
    before, adam_before = module_state(learner), learner._get_optimizer_state()

    learner.update(
        batch=learner_batch(rows(1)),
        minibatch_size=B,
        num_epochs=1,
        timesteps={VALUE_ONLY: True},
    )

    after, adam_after = module_state(learner), learner._get_optimizer_state()
    changed = changed_groups(before, after)
    assert "value" in changed
    assert "target_value" in changed  # psi_bar follows psi by Polyak averaging
    assert changed.isdisjoint(HELD)
    held = [f"{MODULE_ID}_{name}" for name in HELD]
    assert_same_optimizer_states(
        {name: adam_after[name] for name in held}, {name: adam_before[name] for name in held}
    )
    value = f"{MODULE_ID}_value"
    value_steps = [adam[value]["state"]["state"][0]["step"] for adam in (adam_before, adam_after)]
    assert value_steps[1] == value_steps[0] + 1
    module = learner.module[MODULE_ID].unwrapped()
    assert int(module.num_updates) == 2

    # The next ordinary step trains every part again.
    update(learner, rows(2))
    assert changed_groups(after, module_state(learner)) >= {"value", *HELD}


def test_an_iteration_runs_the_value_only_steps_before_its_c_steps(ray_instance, tiny_config):
    from tests.algorithm.test_training import C, T

    # Warm-up of 2 T rows: the first learning iteration catches up in two chunks of C.
    algo = tiny_config(num_env_runners=0, value_only_updates=3, num_warmup_steps=2 * T)
    algo = algo.build_algo()
    try:
        counts = []
        for _ in range(3):
            result = algo.train()
            lifetime = result.get("learners", {}).get(MODULE_ID, {})
            counts.append((result[keys.UPDATE_STEPS], lifetime.get(keys.UPDATE_STEPS_LIFETIME)))
        # warm-up; 3 value-only + 2 C (the last count, not the mean over the calls); 3 + C
        assert counts == [(0, None), (3 + 2 * C, 3 + 2 * C), (3 + C, 3 + 3 + 3 * C)]
        assert np.isfinite(result["learners"][MODULE_ID]["loss/total"])
    finally:
        algo.stop()


def adam_steps(learner) -> dict[str, float]:
    """Each optimizer's step count (the first parameter's), 0 for an empty state."""
    steps = {}
    for name in ("model", *RESTARTED_GROUPS):
        state = list(learner.get_optimizer(MODULE_ID, name).state.values())
        steps[name] = float(state[0]["step"]) if state else 0.0
    return steps


def test_a_restart_starts_every_adam_state_but_f_hats_afresh(ray_instance):
    learner = make_learner()
    for seed in range(3):
        update(learner, rows(seed))
    assert adam_steps(learner) == dict.fromkeys(("model", *RESTARTED_GROUPS), 3.0)

    learner.update(
        batch=learner_batch(rows(3)),
        minibatch_size=B,
        num_epochs=1,
        timesteps={RESTART_OPTIMIZERS: True},
    )
    # The restarted optimizers took their first step from empty moments.
    assert adam_steps(learner) == {"model": 4.0, **dict.fromkeys(RESTARTED_GROUPS, 1.0)}
    # A fresh Adam's moments after one step of gradient g: exp_avg = (1 - beta1) g and
    # exp_avg_sq = (1 - beta2) g^2, i.e. exp_avg_sq = 0.1 exp_avg^2 (no older moments).
    for state in learner.get_optimizer(MODULE_ID, "value").state.values():
        torch.testing.assert_close(state["exp_avg_sq"], 0.1 * state["exp_avg"].square())
    update(learner, rows(4))  # the next steps go on from there
    assert adam_steps(learner) == {"model": 5.0, **dict.fromkeys(RESTARTED_GROUPS, 2.0)}


def test_restart_optimizers_restarts_at_every_learning_iteration(ray_instance, tiny_config):
    from tests.algorithm.test_training import C

    algo = tiny_config(num_env_runners=0, restart_optimizers=True).build_algo()
    try:
        for _ in range(3):  # three learning iterations of C steps (the warm-up is T rows)
            algo.train()
        learner = algo.learner_group._learner
        assert adam_steps(learner) == {"model": 3.0 * C, **dict.fromkeys(RESTARTED_GROUPS, C)}
    finally:
        algo.stop()
