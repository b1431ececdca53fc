"""The Learner's cost switches: fused Adam, the one global gradient check that skips a
NaN step, denormals flushed. Ray-free helpers first, then one local Learner (no Ray)."""

from __future__ import annotations

import math

import pytest
import torch

from drive_rllib import keys
from drive_rllib.algorithm.learner import adam_options, all_finite, copied_scalars

MODULE_ID = "default_policy"


def test_adam_options_fused_on_cpu_and_the_others_as_asked():
    params = [torch.zeros(3, requires_grad=True)]
    assert adam_options("fused", params) == {"fused": True}
    assert adam_options("foreach", params) == {"foreach": True}
    assert adam_options("for_loop", params) == {"foreach": False}
    with pytest.raises(ValueError, match="optimizer_implementation"):
        adam_options("apex", params)


def test_adam_options_fall_back_to_foreach_without_a_fused_kernel():
    params = [torch.zeros(3, device="meta", requires_grad=True)]
    assert adam_options("fused", params) == {"foreach": True}


@pytest.mark.parametrize("foreach", [False, True, None])
def test_all_finite_finds_one_bad_element_among_many(foreach):
    # foreach=True is the accelerators' path (one _foreach_norm), run here on a CPU.
    tensors = [torch.ones(1000), torch.zeros(7, 5), None, torch.tensor(2.0), torch.ones(0)]
    assert all_finite(tensors, foreach)
    for bad in (math.nan, math.inf, -math.inf):
        for index, place in ((1, (3, 2)), (3, ())):  # a gradient, a 0-d loss
            spoiled = [t.clone() if t is not None else None for t in tensors]
            spoiled[index][place] = bad
            assert not all_finite(spoiled, foreach), (bad, index)
    # Huge but finite: a max, not a sum of squares, so no overflow.
    assert all_finite([torch.full((10,), 3e38)], foreach)
    assert all_finite([None, torch.ones(0)], foreach)


def test_copied_scalars_are_one_stacked_copy_in_the_asked_dtype():
    loss = torch.tensor(2.5, requires_grad=True) * 2.0
    values = {"a": loss, "b": torch.tensor([7]), "c": torch.tensor(0.1, dtype=torch.float64)}
    copied = copied_scalars(values, torch.float64)
    assert list(copied) == ["a", "b", "c"]
    assert [v.item() for v in copied.values()] == [5.0, 7.0, 0.1]
    assert all(v.dtype == torch.float64 and v.dim() == 0 for v in copied.values())
    assert not any(v.requires_grad for v in copied.values())
    loss.detach().fill_(0.0)  # an output overwritten later does not reach the copy
    assert copied["a"].item() == 5.0
    assert copied_scalars({}) == {}


def local_learner(tiny_config, **training):
    """A built DRIVETorchLearner in this process (Pendulum's spaces, tiny networks)."""
    import gymnasium as gym

    config = tiny_config(**training)
    env = gym.make("Pendulum-v1")
    try:
        return config.build_learner(env=env)
    finally:
        env.close()


def parameters(learner):
    module = learner.module[MODULE_ID].unwrapped()
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def gradients_of(learner, fill):
    """A gradient for every parameter (``fill`` 0.01), one element NaN when asked."""
    grads = {}
    for ref, param in learner._params.items():
        grads[ref] = torch.full_like(param, 0.01)
    if math.isnan(fill):
        next(iter(grads.values())).view(-1)[0] = math.nan
    return grads


@pytest.mark.parametrize("implementation", ["fused", "foreach", "for_loop"])
def test_learner_builds_the_asked_optimizers(tiny_config, implementation):
    learner = local_learner(tiny_config, optimizer_implementation=implementation)
    for _, optimizer in learner.get_optimizers_for_module(MODULE_ID):
        group = optimizer.param_groups[0]
        assert bool(group["fused"]) == (implementation == "fused")
        if implementation != "fused":
            assert group["foreach"] == (implementation == "foreach")


def test_a_nan_gradient_skips_the_whole_step(tiny_config):
    # One NaN among all gradients (the loss was finite): no optimizer steps, and the step
    # is marked for ``_skip`` (counted there: tests/algorithm/test_skipped_update.py).
    learner = local_learner(tiny_config)
    before = parameters(learner)
    learner.apply_gradients(gradients_of(learner, math.nan))
    after = parameters(learner)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert learner._skip_step
    assert "non-finite gradients" in learner._nonfinite_error
    # No optimizer took a step: none holds state yet.
    assert all(not opt.state for _, opt in learner.get_optimizers_for_module(MODULE_ID))
    learner._nonfinite_error, learner._skip_step = None, False
    learner.apply_gradients(gradients_of(learner, 0.01))
    after = parameters(learner)
    assert all(not torch.equal(before[name], after[name]) for name in before)
    assert not learner._skip_step


def test_rllib_per_parameter_checks_still_zero_nan_gradients(tiny_config):
    learner = local_learner(tiny_config, gradient_check="per_parameter")
    learner.apply_gradients(gradients_of(learner, math.nan))
    after = parameters(learner)
    assert all(torch.isfinite(p).all() for p in after.values())
    assert not learner._skip_step


def test_update_flushes_denormals_on_its_thread(tiny_config):
    learner = local_learner(tiny_config)
    try:
        # Off first: an earlier local Learner's update may have left it on in this thread,
        # and a subnormal literal is flushed when the tensor is made.
        torch.set_flush_denormal(False)
        tiny = torch.tensor([1e-40])
        assert tiny.item() != 0.0
        learner.before_gradient_based_update(timesteps={})
        if learner._flush_denormals:  # False only on a CPU without SSE3
            assert (tiny * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_restored_optimizer_state_keeps_the_configured_implementation(tiny_config):
    old = local_learner(tiny_config, optimizer_implementation="for_loop")
    old.apply_gradients(gradients_of(old, 0.01))
    learner = local_learner(tiny_config)
    learner._set_optimizer_state(old._get_optimizer_state())
    for _, optimizer in learner.get_optimizers_for_module(MODULE_ID):
        assert optimizer.param_groups[0]["fused"]
        assert optimizer.state  # the moments came with the state
    before = parameters(learner)
    learner.apply_gradients(gradients_of(learner, 0.01))
    assert all(not torch.equal(before[n], p) for n, p in parameters(learner).items())


@pytest.mark.parametrize("native", [True, False])
def test_the_learner_resolves_auto_precision_for_its_device(tiny_config, monkeypatch, native):
    from drive_rllib.algorithm import learner as learner_module
    from drive_rllib.core import Precision, update

    # The device's answer, as the core's resolve_precision and the Learner read it.
    monkeypatch.setattr(update, "native_bfloat16", lambda device: native)
    monkeypatch.setattr(learner_module, "native_bfloat16", lambda device: native)
    learner = local_learner(tiny_config, precision="auto")
    resolved = learner.module[MODULE_ID].unwrapped().spec.update.precision
    assert resolved is (Precision.BFLOAT16 if native else Precision.FLOAT32)


def test_bfloat16_on_a_device_without_it_warns_what_to_set(tiny_config, monkeypatch, caplog):
    from drive_rllib.algorithm import learner as learner_module

    monkeypatch.setattr(learner_module, "native_bfloat16", lambda device: False)
    with caplog.at_level("WARNING", logger=learner_module.__name__):
        learner = local_learner(tiny_config, precision="bfloat16")
    assert learner.module[MODULE_ID].unwrapped().spec.update.precision.value == "bfloat16"
    assert "emulates it" in caplog.text and "precision='auto' or 'float32'" in caplog.text


@pytest.mark.ray
def test_logged_metrics_outlive_the_step_outputs_they_came_from(ray_instance):
    # Under CUDA graphs (torch_compile_learner_dynamo_mode="reduce-overhead") each step's
    # replay overwrites the previous step's outputs, while the metrics logger keeps its
    # values until the update's results are reduced. Here the step's function fills the
    # previous step's outputs with NaN before it computes its own, as a replay would.
    import numpy as np

    from drive_rllib.algorithm.batch import learner_batch
    from tests.algorithm.test_skipped_update import B, make_learner, rows

    learner = make_learner()
    module = learner.module[MODULE_ID].unwrapped()
    step, outputs, values = module._step, [], []

    def replayed(*args, **kwargs):
        for tensor in outputs:
            tensor.detach().fill_(math.nan)
        loss, means, diagnostics = step(*args, **kwargs)
        outputs[:] = [*means.values(), *diagnostics.values()]
        values.append(
            {
                **{key: float(value) for key, value in diagnostics.items()},
                **{keys.term_key(name): float(value) for name, value in means.items()},
            }
        )
        return loss, means, diagnostics

    module._step = replayed
    parts = [rows(0), rows(1)]
    batch = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    result = learner.update(batch=learner_batch(batch), minibatch_size=B, num_epochs=1)
    assert len(values) == 2
    logged = result[MODULE_ID]
    for key in values[0]:
        expected = (values[0][key] + values[1][key]) / 2
        assert logged[key].peek() == pytest.approx(expected, rel=1e-5), key


@pytest.mark.ray
def test_an_update_step_reads_one_value_back_from_the_device(ray_instance):
    # Whether the loss and the gradients are finite (the skip-on-NaN rule), in one check;
    # counters, flags and logged statistics stay on the device until RLlib reduces the
    # results once per update() call. Per step = (reads of 6 steps - reads of 2) / 4.
    import numpy as np

    from drive_rllib.algorithm.batch import learner_batch
    from tests.algorithm.test_skipped_update import B, make_learner, rows
    from tests.core.helpers import CountHostReads

    learner = make_learner()

    def reads(steps: int, seed: int) -> int:
        parts = [rows(seed + i) for i in range(steps)]
        batch = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        with CountHostReads() as mode:
            learner.update(batch=learner_batch(batch), minibatch_size=B, num_epochs=1)
        return mode.reads

    reads(2, 0)  # the first step sets the return range from the rewards' quantiles
    per_step = (reads(6, 10) - reads(2, 20)) / 4
    assert per_step == 1
    assert learner.module[MODULE_ID].unwrapped().updates_done() == 10
