"""Pendulum-v1 that emits bad values at given env steps (counted over the env's lifetime)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class FaultyPendulum(gym.Wrapper):
    """Pendulum-v1 with NaN / inf / huge values at chosen steps.

    ``env_config`` maps a fault to the lifetime step numbers (0-based, counting
    every ``step()`` call of this env) at which it happens: ``nan_obs``,
    ``huge_obs`` (1e25), ``inf_reward``, ``huge_reward`` (1e30).
    """

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__(gym.make("Pendulum-v1"))
        config = dict(env_config or {})
        self.faults = {name: set(config.get(name, ())) for name in FAULTS}
        self.num_steps = 0

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        step, self.num_steps = self.num_steps, self.num_steps + 1
        observation = np.array(observation, dtype=np.float32)
        if step in self.faults["nan_obs"]:
            observation[0] = np.nan
        if step in self.faults["huge_obs"]:
            observation[1] = 1e25
        if step in self.faults["inf_reward"]:
            reward = np.inf
        if step in self.faults["huge_reward"]:
            reward = 1e30
        return observation, reward, terminated, truncated, info


FAULTS = ("nan_obs", "huge_obs", "inf_reward", "huge_reward")


class RaisingPendulum(gym.Wrapper):
    """Pendulum-v1 whose ``step()`` raises at every ``raise_every``-th call of the process
    (counted over all its instances: a recreated env carries on the count)."""

    steps_in_process = 0

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__(gym.make("Pendulum-v1"))
        self.raise_every = int((env_config or {}).get("raise_every", 0))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        RaisingPendulum.steps_in_process += 1
        if self.raise_every and RaisingPendulum.steps_in_process % self.raise_every == 0:
            raise RuntimeError(f"simulated crash at step {RaisingPendulum.steps_in_process}")
        return self.env.step(action)


class WrongShapePendulum(gym.Wrapper):
    """Pendulum-v1 whose observations have 4 entries where its observation_space says 3."""

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__(gym.make("Pendulum-v1"))

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        return np.append(observation, 0.0).astype(np.float32), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return np.append(observation, 0.0).astype(np.float32), reward, terminated, truncated, info
