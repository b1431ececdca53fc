"""What is wrong with an experiment's env id, found without a Ray process (gymnasium only)."""

from __future__ import annotations

import warnings
from typing import Any


def env_problems(env: Any) -> list[str]:
    """What is wrong with an env id (each value of a grid search): one line each.

    Unknown ids get gymnasium's suggestion; an old version that cannot be made here
    (MuJoCo ``-v2``/``-v3`` needed mujoco-py) is named with its current version;
    ``module:EnvId`` imports ``module`` (which registers the env), as ``gym.make`` does.
    """
    envs = env["grid_search"] if isinstance(env, dict) and "grid_search" in env else [env]
    return [problem for problem in map(_one_env_problem, envs) if problem]


def _one_env_problem(env: Any) -> str | None:
    if not isinstance(env, str):
        return f"env must be a gymnasium id such as 'Pendulum-v1', got {env!r}"
    import gymnasium as gym

    try:
        if ":" in env:
            gym.make(env).close()  # imports the module before it looks the id up
            return None
        gym.spec(env)
    except gym.error.Error as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"unknown env {env!r}: {message}"
    except (ImportError, ModuleNotFoundError) as error:
        return f"env {env!r} cannot be imported: {error}"
    current = current_version(env)
    if current is None or current == env:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's "out of date": we say it below
            gym.make(env).close()
    except Exception:  # noqa: BLE001 -- any failure to make an old version
        return (
            f"env {env!r} is an old version that gymnasium cannot make here (MuJoCo -v2/-v3 "
            f"needed mujoco-py): use {current!r}, its current version"
        )
    return None


def current_version(env_id: str) -> str | None:
    """The id of the newest registered version of ``env_id``'s env (None: not versioned)."""
    import gymnasium as gym
    from gymnasium.envs.registration import parse_env_id

    namespace, name, version = parse_env_id(env_id)
    if version is None:
        return None
    versions = [
        (spec.version, spec.id)
        for spec in gym.registry.values()
        if spec.namespace == namespace and spec.name == name and spec.version is not None
    ]
    return max(versions)[1] if versions else None
