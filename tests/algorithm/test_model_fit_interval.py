"""``model_fit_interval``: f_hat steps on every k-th update step only; the steps between
hold f_hat and its optimizer bit-identical and train the rest as usual (a local Learner)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drive_rllib import keys
from drive_rllib.core import UpdateSpec, combine_terms, update_terms
from tests.algorithm.helpers import MODULE_ID, changed_groups
from tests.algorithm.test_skipped_update import make_learner, module_state, rows, update
from tests.core.helpers import random_batch, tiny_nets


def test_held_model_terms_give_f_hat_zero_gradients_and_no_likelihood_diagnostics():
    nets = tiny_nets()
    spec = UpdateSpec(horizon=2)
    terms, diagnostics = update_terms(nets, random_batch(), spec, fit_model=False)
    assert torch.equal(terms["model"], torch.zeros(8))
    assert torch.equal(terms["termination"], torch.zeros(8))
    assert keys.MODEL_NLL_PER_MEMBER not in diagnostics
    assert keys.MODEL_TERMINATION_PER_MEMBER not in diagnostics
    combine_terms(terms, dict.fromkeys(terms, 1.0)).backward()
    for name, param in nets.model.named_parameters():
        assert param.grad is not None, name  # touched: DDP sees it used
        assert not param.grad.any(), name
    assert nets.value.layers[-1].weight.grad.any()  # the rest trains as usual


@pytest.mark.ray
@pytest.mark.parametrize("gradient_check", ["global", "per_parameter"])
def test_steps_between_fits_hold_f_hat_and_its_adam_state(ray_instance, gradient_check):
    learner = make_learner(model_fit_interval=2, gradient_check=gradient_check)
    module = learner.module[MODULE_ID].unwrapped()
    model_optimizer = learner.get_optimizer(MODULE_ID, "model")

    def model_adam_state():
        return {k: v.clone() for s in model_optimizer.state.values() for k, v in s.items()}

    before = module_state(learner)
    result = update(learner, rows(0))  # num_updates 0: fits
    fitted = module_state(learner)
    assert changed_groups(before, fitted) >= {"model", "posterior", "prior", "value"}
    assert keys.LOSS_MODEL in result[MODULE_ID]
    adam_after_fit = model_adam_state()

    result = update(learner, rows(1))  # num_updates 1: holds f_hat
    held = module_state(learner)
    assert "model" not in changed_groups(fitted, held)
    assert changed_groups(fitted, held) >= {"posterior", "prior", "value"}
    for key, value in fitted.items():
        if key.startswith("nets.model."):
            np.testing.assert_array_equal(held[key], value, err_msg=key)
    after_held = model_adam_state()
    assert after_held.keys() == adam_after_fit.keys()
    for key, value in adam_after_fit.items():
        assert torch.equal(after_held[key], value), key  # moments and step count unchanged
    assert int(module.num_updates) == 2

    update(learner, rows(2))  # num_updates 2: fits again
    assert "model" in changed_groups(held, module_state(learner))


@pytest.mark.ray
def test_model_fit_interval_start_fits_every_step_before_the_interval(ray_instance):
    # start 3, interval 2: steps 0, 1, 2 fit (the catch-up), then 4 (3 and 5 hold).
    learner = make_learner(model_fit_interval=2, model_fit_interval_start=3)
    fitted = []
    for step in range(6):
        before = module_state(learner)
        update(learner, rows(step))
        fitted.append("model" in changed_groups(before, module_state(learner)))
    assert fitted == [True, True, True, False, True, False]
