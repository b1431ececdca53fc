"""Episode chunks to flat transitions, and what the RLModule does when acting (no Ray cluster)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from drive_rllib.algorithm import DRIVEConfig, DRIVETorchRLModule, episodes_to_transitions


def test_chunks_become_transitions_without_overlap_or_lookback():
    # Steps t = 0..4 of one episode: obs_t = t, action_t = (t, t), reward_t = 10 t; it
    # terminates after step 4 and is cut into chunks [0, 3) and [3, 5) as the runner does.
    first = SingleAgentEpisode()
    first.add_env_reset(observation=np.zeros(3, np.float32))
    for t in range(3):
        first.add_env_step(
            observation=np.full(3, t + 1, np.float32),
            action=np.full(2, t, np.float32),
            reward=10.0 * t,
        )
    second = first.cut(len_lookback_buffer=1)
    for t in range(3, 5):
        second.add_env_step(
            observation=np.full(3, t + 1, np.float32),
            action=np.full(2, t, np.float32),
            reward=10.0 * t,
            terminated=t == 4,
        )
    # A truncated episode of one step.
    third = SingleAgentEpisode()
    third.add_env_reset(observation=np.full(3, 7.0, np.float32))
    third.add_env_step(
        observation=np.full(3, 8.0, np.float32),
        action=np.ones(2, np.float32),
        reward=-1.0,
        truncated=True,
    )

    batch = episodes_to_transitions([first.to_numpy(), second.to_numpy(), third.to_numpy()])

    assert set(batch) == {"obs", "action", "reward", "next_obs", "terminated", "truncated"}
    np.testing.assert_array_equal(batch["obs"][:, 0], [0, 1, 2, 3, 4, 7])
    np.testing.assert_array_equal(batch["next_obs"][:, 0], [1, 2, 3, 4, 5, 8])
    np.testing.assert_array_equal(batch["action"][:, 1], [0, 1, 2, 3, 4, 1])
    np.testing.assert_array_equal(batch["reward"], [0, 10, 20, 30, 40, -1])
    np.testing.assert_array_equal(batch["terminated"], [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(batch["truncated"], [0, 0, 0, 0, 0, 1])
    assert batch["obs"].dtype == np.float32 and batch["terminated"].dtype == bool


def test_no_episodes_give_no_transitions():
    assert episodes_to_transitions([]) == {}


def make_module(inference_only: bool, **training) -> DRIVETorchRLModule:
    env = gym.make("Pendulum-v1")
    config = (
        DRIVEConfig()
        .environment("Pendulum-v1")
        .training(
            policy_hiddens=[16],
            value_hiddens=[16],
            model_hiddens=[16],
            ensemble_size=2,
            num_elites=1,
            **training,
        )
    )
    return DRIVETorchRLModule(
        observation_space=env.observation_space,
        action_space=env.action_space,
        inference_only=inference_only,
        model_config=config.model_config,
    )


def test_warmup_actions_are_uniform_in_module_space():
    module = make_module(inference_only=True)
    module.act_uniformly = True
    actions = module.forward_exploration({Columns.OBS: torch.zeros(20_000, 3)})[Columns.ACTIONS]
    assert actions.shape == (20_000, 1)
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    # Uniform on [-1, 1]: mean 0, variance 1/3.
    assert abs(actions.mean().item()) < 0.02
    assert actions.var().item() == pytest.approx(1.0 / 3.0, abs=0.02)


def test_inference_is_the_deterministic_mean_of_the_prior():
    module = make_module(inference_only=True)
    obs = torch.randn(5, 3)
    first = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    second = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    torch.testing.assert_close(first, second)
    mean, _ = module.nets.prior(module.nets.obs_normalizer(obs))
    torch.testing.assert_close(first, torch.tanh(mean))
    explored = module.forward_exploration({Columns.OBS: obs})[Columns.ACTIONS]
    assert explored.abs().max() <= 1.0 and not torch.equal(explored, first)


@pytest.mark.parametrize(
    "inference_policy, kept",
    [
        ("prior", {"obs_normalizer", "prior"}),
        ("posterior", {"obs_normalizer", "prior", "posterior"}),
    ],
)
def test_env_runner_module_holds_only_what_acting_needs(inference_policy, kept):
    learner_module = make_module(inference_only=False, inference_policy=inference_policy)
    runner_module = make_module(inference_only=True, inference_policy=inference_policy)
    runner_parts = {key.split(".")[1] for key in runner_module.state_dict()}
    assert runner_parts == kept
    # What the learner sends to runners is exactly what they hold.
    synced = learner_module.get_state(inference_only=True)
    assert set(synced) == set(runner_module.state_dict())
    runner_module.set_state(synced)
    for key, value in runner_module.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), synced[key])
