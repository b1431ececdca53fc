"""The lean sampling loop of DRIVEEnvRunner: vectorised envs, one chunk of flat transitions.

Runs an EnvRunner in this process (no Ray cluster) on a counting env whose
transitions are known: obs = (t, the env action just received), reward = t, and
every episode terminates after 3 steps.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from drive_rllib.algorithm import DRIVEConfig
from drive_rllib.algorithm.env_runner import DRIVEEnvRunner, step_sub_envs
from drive_rllib.algorithm.observations import observation_ok
from drive_rllib.tiny import TINY_NETWORKS

EPISODE_LENGTH = 3


class CountingEnv(gym.Env):
    """obs = (t, last env action), reward = t, terminated at t = 3; actions in [0, 4]."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(0.0, 4.0, (1,), np.float32)

    def __init__(self, config: dict | None = None) -> None:
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, float(np.asarray(action).reshape(-1)[0])], np.float32)
        return obs, float(self.t), self.t == EPISODE_LENGTH, False, {}


def runner(num_envs: int = 2, **training) -> DRIVEEnvRunner:
    config = (
        DRIVEConfig()
        .environment(CountingEnv)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
        .training(**{**TINY_NETWORKS, **training})
        .debugging(seed=0)
    )
    return DRIVEEnvRunner(config=config)


@pytest.mark.parametrize("random_actions", [True, False])
def test_lean_chunk_holds_every_step_and_no_reset_step(random_actions):
    env_runner = runner()
    assert env_runner.lean_collection()
    batch = env_runner._lean_sample(10, None, random_actions, False)
    num_rows = len(batch["reward"])
    assert 10 <= num_rows < 12
    # Every row is one real step: t goes 1, 2, 3 and each step starts where the last ended.
    t_before, t_after = batch["obs"][:, 0], batch["next_obs"][:, 0]
    np.testing.assert_array_equal(t_after, t_before + 1)
    np.testing.assert_array_equal(batch["reward"], t_after)
    np.testing.assert_array_equal(batch["terminated"], t_after == EPISODE_LENGTH)
    assert not batch["truncated"].any()
    # Stored actions are in module space [-1, 1]; the env received them in [0, 4].
    assert np.all(np.abs(batch["action"]) <= 1.0)
    np.testing.assert_allclose(
        batch["next_obs"][:, 1], (batch["action"][:, 0] + 1.0) * 2.0, atol=1e-5
    )
    # The next call continues the same episodes.
    following = env_runner._lean_sample(4, None, random_actions, False)
    np.testing.assert_array_equal(following["next_obs"][:, 0], following["obs"][:, 0] + 1)


def test_lean_sample_logs_rllib_episode_and_step_metrics():
    env_runner = runner(num_envs=3)
    batch = env_runner._lean_sample(30, None, True, False)
    metrics = env_runner.get_metrics()
    assert metrics["num_env_steps_sampled"].peek() == len(batch["reward"])
    assert metrics["num_episodes"].peek() == int(batch["terminated"].sum())
    assert metrics["episode_return_mean"].peek() == pytest.approx(1 + 2 + 3)
    assert metrics["episode_len_mean"].peek() == pytest.approx(EPISODE_LENGTH)


def test_episode_callbacks_keep_rllib_loop():
    config = (
        DRIVEConfig()
        .environment(CountingEnv)
        .env_runners(num_env_runners=0)
        .training(**TINY_NETWORKS)
        .callbacks(on_episode_end=lambda **kwargs: None)
    )
    assert not DRIVEEnvRunner(config=config).lean_collection()
    assert not runner(lean_collection=False).lean_collection()


@pytest.mark.parametrize("inference_policy", ["prior", "posterior"])
def test_acting_policy_acts_as_forward_exploration_and_inference(inference_policy):
    import torch
    from ray.rllib.core.columns import Columns

    env_runner = runner(inference_policy=inference_policy)
    module = env_runner.module
    module.nets.obs_normalizer.update(torch.randn(50, 2) * 3 + 1)
    obs = torch.randn(5, 2)
    with torch.no_grad():
        torch.manual_seed(3)
        explored = module.forward_exploration({Columns.OBS: obs})[Columns.ACTIONS]
        torch.manual_seed(3)
        lean_explored = module.acting_policy(explore=True)(obs)
        inferred = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
        lean_inferred = module.acting_policy(explore=False)(obs)
    torch.testing.assert_close(lean_explored, explored)
    torch.testing.assert_close(lean_inferred, inferred)


class FailingOnceEnv(CountingEnv):
    """CountingEnv whose 5th step (over all instances) raises once."""

    steps = 0

    def step(self, action):
        FailingOnceEnv.steps += 1
        if FailingOnceEnv.steps == 5:
            raise RuntimeError("simulator blew up")
        return super().step(action)


def test_a_failed_env_step_recreates_the_env_and_keeps_what_was_collected():
    config = (
        DRIVEConfig()
        .environment(FailingOnceEnv)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .fault_tolerance(restart_failed_sub_environments=True)
        .training(**TINY_NETWORKS)
    )
    env_runner = DRIVEEnvRunner(config=config)
    batch = env_runner._lean_sample(10, None, True, False)
    assert len(batch["reward"]) >= 10
    np.testing.assert_array_equal(batch["next_obs"][:, 0], batch["obs"][:, 0] + 1)
    assert env_runner.get_metrics()["num_env_step_failures"].peek() == 1


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        ([0.0, -2.0, 2.0], True),
        ([0.0, 2.5], False),  # beyond the bound
        ([np.nan, 0.0], False),
        ([0.0, np.inf], False),
        ([-np.inf], False),
        ([], True),
    ],
)
def test_observation_ok_limit_cases(values, ok):
    assert observation_ok(np.array(values), 2.0) is ok
    assert observation_ok(np.array(values, dtype=np.float32), 2.0) is ok
    assert observation_ok(np.array([np.inf]), math.inf) is False


class RandomLengthEnv(CountingEnv):
    """CountingEnv whose episodes end at a random step (drawn from the env's own seeded rng),
    terminated or truncated, and whose obs carry a random number."""

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, self.np_random.normal()], np.float32)
        ended = self.np_random.random() < 0.3
        return obs, float(action[0]), ended and self.t % 2 == 0, ended and self.t % 2 == 1, {}


def test_stepping_sub_envs_directly_matches_the_vector_env_step():
    def vector_env():
        env = gym.vector.SyncVectorEnv([RandomLengthEnv for _ in range(3)])
        env.reset(seed=7)
        return env

    direct, reference = vector_env(), vector_env()
    actions = np.random.default_rng(0).uniform(0.0, 4.0, (40, 3, 1)).astype(np.float32)
    resetting = np.zeros(3, dtype=bool)
    ended = {"terminated": 0, "truncated": 0}
    for step, action in enumerate(actions):
        obs, reward, terminated, truncated, infos = step_sub_envs(direct, action, resetting)
        ref_obs, ref_reward, ref_terminated, ref_truncated, _ = reference.step(action)
        np.testing.assert_array_equal(obs, ref_obs, err_msg=f"step {step}")
        np.testing.assert_array_equal(reward, ref_reward)
        np.testing.assert_array_equal(terminated, ref_terminated)
        np.testing.assert_array_equal(truncated, ref_truncated)
        assert infos is None
        resetting = terminated | truncated
        ended["terminated"] += int(terminated.sum())
        ended["truncated"] += int(truncated.sum())
    assert min(ended.values()) > 0  # both ends, so the reset branch ran
    # The vector env's own autoreset record followed: a plain step continues identically.
    np.testing.assert_array_equal(direct.step(actions[0])[0], reference.step(actions[0])[0])


class RecordingReplay:
    """A stand-in for the replay handle: keeps what the runner pushes."""

    def __init__(self) -> None:
        self.pushed: list[dict] = []

    def call(self, method: str, *args):
        assert method == "push"
        self.pushed.append(args[0])
        return {"added": len(args[0]["reward"]), "rejected": 0}


def test_rllibs_own_loop_samples_and_pushes_through_drives_runner():
    """Off the lean path (episode callbacks, lean_collection=False) DRIVEEnvRunner.sample
    runs RLlib's own loop, which calls the runner's `_sample` with RLlib's arguments: the
    runner's own sampling step must not shadow that name."""
    env_runner = runner(lean_collection=False)
    replay = RecordingReplay()
    env_runner.set_replay_actor(replay)
    assert env_runner.sample(num_timesteps=12, random_actions=True) == []
    assert sum(len(rows["reward"]) for rows in replay.pushed) == 12
