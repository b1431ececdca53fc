"""``config.framework(torch_compile_learner=True)``: the Learner compiles each DRIVE
module's update step (RLlib 2.60's own hook compiles none of a MultiRLModule's
modules), and a compiled Learner trains. ``aot_eager`` traces like inductor but
skips code generation, so the test takes seconds, not minutes."""

from __future__ import annotations

import math

import pytest
import torch

from drive_rllib.core import update_loss
from tests.algorithm.helpers import MODULE_ID, changed_groups, learner_module_states


def compiled(tiny_config, **training):
    return tiny_config(**training).framework(
        torch_compile_learner=True, torch_compile_learner_dynamo_backend="aot_eager"
    )


def test_the_learner_compiles_the_update_step_once_and_only_it(tiny_config):
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    try:
        learner = compiled(tiny_config).build_learner(env=env)
    finally:
        env.close()
    module = learner.module[MODULE_ID].unwrapped()
    assert module.is_compiled
    # The step's loss is the compiled wrapper; acting stays the class's eager code.
    assert module._step is not update_loss
    assert "_forward_exploration" not in vars(module)
    assert "_forward_inference" not in vars(module)
    wrapper = module._step
    module.compile(learner._torch_compile_cfg)  # a second call does nothing
    assert module._step is wrapper


@pytest.mark.ray
def test_a_compiled_learner_trains_with_finite_losses(ray_instance, tiny_config):
    # Two iterations of 4 update steps; the tiny config fits f_hat on every step.
    torch._dynamo.reset()
    algo = compiled(tiny_config).build_algo()
    try:
        compiled_flags = algo.learner_group.foreach_learner(
            lambda learner: learner.module[MODULE_ID].unwrapped().is_compiled
        )
        assert [flag.get() for flag in compiled_flags] == [True]
        initial = learner_module_states(algo)[0]
        results = [algo.train() for _ in range(2)]
        learner = results[-1]["learners"][MODULE_ID]
        assert learner["training/update_steps_lifetime"] == 8
        assert math.isfinite(learner["loss/total"])
        assert math.isfinite(learner["model/holdout_error"])
        after = learner_module_states(algo)[0]
        assert changed_groups(initial, after) >= {"model", "posterior", "prior", "value"}
    finally:
        algo.stop()


def test_inductor_without_a_cxx_compiler_is_one_clear_error_when_the_learner_is_built(
    tiny_config,
):
    # inductor compiles on the first update step, after the warm-up; the Learner's build
    # checks for its C++ compiler first.
    import gymnasium as gym
    from torch._inductor import config as inductor_config

    config = tiny_config().framework(
        torch_compile_learner=True, torch_compile_learner_dynamo_backend="inductor"
    )
    env = gym.make("Pendulum-v1")
    # inductor's own patch, not monkeypatch: monkeypatch's undo leaves cpp.cxx unreadable
    # for the rest of the process.
    patched = inductor_config.patch({"cpp.cxx": ("/nonexistent/bin/g++",)})
    try:
        with (
            patched,
            pytest.raises(ValueError, match=r"needs a C\+\+ compiler.*torch_compile_learner=False"),
        ):
            config.build_learner(env=env)
    finally:
        env.close()


@pytest.mark.parametrize(("device", "cpp_wrapper"), [("cpu", True), ("meta", False)])
def test_the_cxx_wrapper_is_asked_for_on_a_cpu_only(tiny_config, monkeypatch, device, cpp_wrapper):
    # On CUDA, the C++ wrapper failed to build the step's backward (an H100); a module on
    # any device but a CPU compiles without it. "meta" stands in
    # for a GPU: the module's own parameters tell compile where it runs.
    import gymnasium as gym
    from ray.rllib.core.rl_module.torch.torch_compile_config import TorchCompileConfig

    env = gym.make("Pendulum-v1")
    try:
        module = tiny_config().build_learner(env=env).module[MODULE_ID].unwrapped()
    finally:
        env.close()
    module.to(device)
    asked = {}
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: asked.update(kwargs) or fn)
    assert not module.is_compiled
    module.compile(TorchCompileConfig(torch_dynamo_backend="inductor"))
    assert asked["options"]["fallback_random"] is True
    assert asked["options"].get("cpp_wrapper", False) is cpp_wrapper
