"""Observations an EnvRunner checks: finite, within a bound, of the space's shape.

Every sub-env of a `DRIVEEnvRunner` is wrapped in `EndEpisodeOnBadObservation` (through
``bad_observation_env_creator``): an observation with NaN or inf, or beyond the bound,
ends its episode; one of the wrong shape or dtype is an `ObservationShapeError` that
names the env and both shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.env_context import EnvContext
from ray.tune.registry import ENV_CREATOR, _global_registry


def observation_scale(observation_space: gym.Space) -> float:
    """The env's own observation scale: its largest finite bound (at least 1)."""
    bounds = [
        np.abs(np.asarray(bound, dtype=np.float64))
        for bound in (
            getattr(observation_space, "low", None),
            getattr(observation_space, "high", None),
        )
        if bound is not None
    ]
    finite = [value[np.isfinite(value)] for value in bounds]
    largest = max((float(value.max()) for value in finite if value.size), default=1.0)
    return max(1.0, largest)


def observation_ok(observation: Any, bound: float) -> bool:
    """Whether an observation is finite and within ``bound`` in every entry.

    One reduction per call (it runs on every env step): the largest magnitude is NaN when
    an entry is NaN (and NaN <= bound is False), and inf when an entry is inf.
    """
    values = np.asarray(observation)
    if values.dtype.kind not in "fc":
        values = values.astype(np.float64)
    if values.size == 0:
        return True
    largest = float(np.max(np.abs(values)))
    return largest <= bound and largest < math.inf


class ObservationShapeError(ValueError):
    """An env returned an observation whose shape or dtype its observation space does not
    allow: a bug in the env (or its space), never recovered from by recreating the env."""


def observation_mismatch(observation: Any, space: gym.Space) -> str | None:
    """What is wrong with ``observation`` for the Box ``space`` (one phrase), or None.

    Only the shape and the dtype's kind (a number, not complex, text or object) are
    checked: it runs on every env step. Other spaces are not checked.
    """
    if not isinstance(space, gym.spaces.Box):
        return None
    values = observation if isinstance(observation, np.ndarray) else np.asarray(observation)
    if values.shape != space.shape or values.dtype.kind not in "fiub":
        return (
            f"expected shape {space.shape} ({space.dtype}, the observation_space), "
            f"received shape {values.shape} ({values.dtype})"
        )
    return None


class EndEpisodeOnBadObservation(gym.Wrapper):
    """Truncates the episode at an observation with NaN or inf, or beyond ``bound``.

    The vector env then resets this sub-env on its next step, so the policy's
    action for the bad observation never reaches the env; the transition that
    ends in it is dropped by the replay actor.

    An observation of the wrong shape or dtype (`observation_mismatch`) raises
    `ObservationShapeError` naming ``name``; it is also appended to ``errors``,
    which the EnvRunner reads before it would recreate the env.
    """

    def __init__(
        self,
        env: gym.Env,
        bound: float,
        name: str = "",
        errors: list[ObservationShapeError] | None = None,
    ) -> None:
        super().__init__(env)
        self.bound = bound
        self.name = name or str(getattr(env.spec, "id", None) or type(env.unwrapped).__name__)
        self.errors = errors if errors is not None else []

    def _check_shape(self, observation: Any, call: str) -> None:
        problem = observation_mismatch(observation, self.observation_space)
        if problem is not None:
            error = ObservationShapeError(f"The env {self.name} {call}: {problem}")
            self.errors.append(error)
            raise error

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self._check_shape(observation, "reset() returned an observation of the wrong shape")
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._check_shape(observation, "step() returned an observation of the wrong shape")
        if not observation_ok(observation, self.bound):
            truncated = True
            info = {**info, "drive_bad_observation": True}
        return observation, reward, terminated, truncated, info


def bad_observation_env_creator(
    env: Any, bound: float, errors: list[ObservationShapeError] | None = None
) -> Callable[[EnvContext], gym.Env]:
    """An env creator of ``env`` (as `config.environment` takes it) whose every env is
    wrapped in `EndEpisodeOnBadObservation` at ``bound`` times its observation scale.

    ``env``: a name registered with Tune, a creator (``env_config -> env``) or a
    gymnasium id (made with ``gym.make(env, **env_config)``, as RLlib makes it).
    """
    if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
        make = _global_registry.get(ENV_CREATOR, env)
    elif callable(env):
        make = env
    else:

        def make(env_config: EnvContext) -> gym.Env:
            return gym.make(env, **env_config)

    name = env if isinstance(env, str) else getattr(env, "__name__", "")

    def create(env_config: EnvContext) -> gym.Env:
        sub_env = make(env_config)
        return EndEpisodeOnBadObservation(
            sub_env,
            bound * observation_scale(sub_env.observation_space),
            name,
            errors,
        )

    return create
