"""``model_fit_thread``: f_hat's fit runs on a thread of its own beside the rest of the
update step, and the step's gradients, draws and results stay those of the one backward."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest
import torch

from drive_rllib import keys
from drive_rllib.algorithm.model_fit_thread import ModelFitThread
from drive_rllib.core import UpdateSpec, combine_terms, loss_weights, update_terms
from drive_rllib.core.spec import NetworkSpec, Precision
from drive_rllib.core.update import MODEL_TERMS, bootstrap_rows, fit_terms
from tests.algorithm.helpers import MODULE_ID, changed_groups
from tests.algorithm.test_skipped_update import make_learner, module_state, rows, update
from tests.core.helpers import random_batch, tiny_nets

SPEC = UpdateSpec(horizon=2, precision=Precision.FLOAT32)
WEIGHTS = loss_weights(SPEC, NetworkSpec())
MODEL_WEIGHTS = {name: WEIGHTS[name] for name in MODEL_TERMS}


def gradients(nets) -> dict[str, torch.Tensor | None]:
    return {name: param.grad for name, param in nets.named_parameters()}


def test_a_fit_apart_gives_every_parameter_the_one_backward_gradient():
    # The one-graph step: model fit, Eq. 6, Eq. 4 in update_terms, one backward.
    nets, batch = tiny_nets(), random_batch()
    torch.manual_seed(3)
    terms, diagnostics = update_terms(nets, batch, SPEC)
    combine_terms(terms, WEIGHTS).backward()
    one_graph = {name: grad.clone() for name, grad in gradients(nets).items() if grad is not None}
    nets.zero_grad(set_to_none=True)

    # Apart: the bootstrap drawn first, then the rest; two backwards, one per part.
    torch.manual_seed(3)
    boot = bootstrap_rows(nets.model, 8, torch.device("cpu"))
    rest, rest_diagnostics = update_terms(nets, batch, SPEC, fit_apart=True)
    assert not set(MODEL_TERMS) & set(rest)  # no model terms, and no likelihood diagnostics
    assert keys.MODEL_NLL_PER_MEMBER not in rest_diagnostics
    fitted = fit_terms(nets, batch, boot, Precision.FLOAT32)
    model_grads = torch.autograd.grad(
        combine_terms(fitted, MODEL_WEIGHTS), list(nets.model.parameters())
    )
    assert all(param.grad is None for param in nets.model.parameters())
    combine_terms(rest, {name: WEIGHTS[name] for name in rest}).backward()
    # The rest of the step reaches no parameter of f_hat: its fit alone trains it.
    assert all(param.grad is None for param in nets.model.parameters())
    for param, grad in zip(nets.model.parameters(), model_grads, strict=True):
        param.grad = grad

    apart = {name: grad for name, grad in gradients(nets).items() if grad is not None}
    assert apart.keys() == one_graph.keys()
    for name, grad in one_graph.items():
        torch.testing.assert_close(apart[name], grad, rtol=0, atol=0, msg=name)
    for name in MODEL_TERMS:
        torch.testing.assert_close(fitted[name], terms[name], rtol=0, atol=0)
    # The same draws after the bootstrap: Eq. 6's and Eq. 4's diagnostics agree.
    for key, value in rest_diagnostics.items():
        torch.testing.assert_close(value, diagnostics[key], msg=key)


def test_the_thread_computes_the_fit_off_the_calling_thread_and_hands_back_its_result():
    nets, batch = tiny_nets(), random_batch()
    threads = []

    def fit(*args):
        threads.append(threading.current_thread())
        return fit_terms(*args)

    worker = ModelFitThread()
    try:
        torch.manual_seed(0)
        job = worker.start(fit, nets, batch, Precision.FLOAT32, MODEL_WEIGHTS)
        terms, grads = job.terms(), job.gradients()
    finally:
        worker.shutdown()
    assert threads and threads[0] is not threading.current_thread()
    assert all(not term.requires_grad for term in terms.values())
    torch.manual_seed(0)
    boot = bootstrap_rows(nets.model, 8, torch.device("cpu"))
    expected = fit_terms(nets, batch, boot, Precision.FLOAT32)
    expected_grads = torch.autograd.grad(
        combine_terms(expected, MODEL_WEIGHTS), list(nets.model.parameters())
    )
    for name in MODEL_TERMS:
        torch.testing.assert_close(terms[name], expected[name], rtol=0, atol=0)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


def test_an_error_in_the_fit_reaches_the_caller_and_wait_does_not_raise():
    def broken(*args):
        raise RuntimeError("the fit broke")

    worker = ModelFitThread()
    try:
        job = worker.start(broken, tiny_nets(), random_batch(), Precision.FLOAT32, MODEL_WEIGHTS)
        job.wait()
        with pytest.raises(RuntimeError, match="the fit broke"):
            job.terms()
        with pytest.raises(RuntimeError, match="the fit broke"):
            job.gradients()
    finally:
        worker.shutdown()


@pytest.mark.ray
def test_a_learner_with_a_model_fit_thread_trains_as_the_one_backward_does(ray_instance):
    # float32: bfloat16's rounding would hide whether the two compute the same step.
    one_graph = make_learner(precision="float32")
    apart = make_learner(precision="float32", model_fit_thread=True)
    module = apart.module[MODULE_ID].unwrapped()
    assert module.fits_apart and not one_graph.module[MODULE_ID].unwrapped().fits_apart
    fit_threads = []
    fit = module._fit_terms

    def recording_fit(*args):
        fit_threads.append(threading.current_thread().name)
        return fit(*args)

    module._fit_terms = recording_fit
    torch.manual_seed(1)
    results = [update(one_graph, rows(seed)) for seed in range(3)]
    torch.manual_seed(1)
    apart_results = [update(apart, rows(seed)) for seed in range(3)]

    assert len(fit_threads) == 3
    assert all(name.startswith("drive-model-fit") for name in fit_threads)
    expected, state = module_state(one_graph), module_state(apart)
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    for name in (keys.LOSS_MODEL, keys.MODEL_NLL_PER_MEMBER, keys.LOSS_TOTAL):
        np.testing.assert_allclose(
            apart_results[-1][MODULE_ID][name].peek(),
            results[-1][MODULE_ID][name].peek(),
            rtol=1e-5,
            err_msg=name,
        )


@pytest.mark.ray
def test_a_non_finite_fit_on_the_thread_skips_the_whole_step(ray_instance):
    learner = make_learner(model_fit_thread=True)
    update(learner, rows(0))
    before = module_state(learner)
    bad = rows(1)
    bad["next_obs"][0, 0] = np.nan  # reaches the model's targets (and Eq. 4's target)

    result = update(learner, bad)

    after = module_state(learner)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert result[MODULE_ID][keys.SKIPPED_STEPS].peek() == 1
    update(learner, rows(2))  # and the next step trains
    assert learner.num_skipped_steps == 1


@pytest.mark.ray
def test_an_error_on_the_fit_thread_fails_the_update_and_the_next_step_runs(ray_instance):
    learner = make_learner(model_fit_thread=True)
    module = learner.module[MODULE_ID].unwrapped()
    fit = module._fit_terms

    def broken(*args):
        raise RuntimeError("the fit broke")

    module._fit_terms = broken
    with pytest.raises(RuntimeError, match="the fit broke"):
        update(learner, rows(0))
    module._fit_terms = fit
    before = module_state(learner)
    update(learner, rows(1))
    assert {"model", "posterior", "value"} <= changed_groups(before, module_state(learner))


@pytest.mark.ray
def test_a_compiled_learner_compiles_the_fit_on_its_thread_and_trains(ray_instance):
    # aot_eager traces like inductor but skips code generation (seconds, not minutes).
    torch._dynamo.reset()
    reference = make_learner(precision="float32")
    config = (
        reference.config.copy(copy_frozen=False)
        .training(model_fit_thread=True)
        .framework(torch_compile_learner=True, torch_compile_learner_dynamo_backend="aot_eager")
    )
    compiled = config.build_learner(env=gym.make("Pendulum-v1"))
    module = compiled.module[MODULE_ID].unwrapped()
    assert module.is_compiled and module.fits_apart
    assert module._fit_terms is not fit_terms  # the thread runs the compiled fit
    torch.manual_seed(1)
    for seed in range(2):
        update(reference, rows(seed))
    torch.manual_seed(1)
    for seed in range(2):
        update(compiled, rows(seed))
    expected, state = module_state(reference), module_state(compiled)
    for key, value in expected.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
