"""The smoothed training return that stop rules, progress lines and checkpoint scores read.

RLlib 2.60 documents ``env_runners/episode_return_mean`` as the mean return of the
last ``metrics_num_episodes_for_smoothing`` episodes, but each EnvRunner reduces its
window before the driver merges the runners' results, and the driver keeps only the
latest iteration's merge: with ``num_env_runners: 0`` (or one episode per iteration
per runner) the value is the latest iteration's episodes alone, and an iteration
without a finished episode reports none. DRIVE's EnvRunners therefore also report
each finished episode's return (`keys.EPISODE_RETURNS`, a list); the driver keeps the
last K of them across iterations (`RecentReturns`, checkpointed with the run) and
writes their mean under ``env_runners/episode_return_mean`` (`smooth_returns`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from drive_rllib import keys

ENV_RUNNERS = "env_runners"
#: The list's key inside the ``env_runners`` group.
RETURNS_KEY = keys.EPISODE_RETURNS.split("/", 1)[1]
MEAN_KEY = keys.RETURN.split("/", 1)[1]


class RecentReturns:
    """The returns of the last ``window`` finished training episodes."""

    def __init__(self, window: int) -> None:
        self.returns: deque[float] = deque(maxlen=max(int(window), 1))

    def add(self, returns: Iterable[Any]) -> None:
        self.returns.extend(float(value) for value in returns if _finite(value))

    def mean(self) -> float | None:
        return sum(self.returns) / len(self.returns) if self.returns else None

    def get_state(self) -> list[float]:
        return list(self.returns)

    def set_state(self, returns: Iterable[Any] | None) -> None:
        self.returns.clear()
        self.add(returns or [])


def smooth_returns(results: dict[str, Any], recent: RecentReturns) -> dict[str, Any]:
    """Folds this iteration's finished episodes into ``recent`` and writes their mean as
    ``env_runners/episode_return_mean`` (left out while no episode has finished); drops
    the per-episode lists, training's and evaluation's, from ``results`` (in place)."""
    runners = results.get(ENV_RUNNERS)
    if isinstance(runners, dict):
        recent.add(_as_list(runners.pop(RETURNS_KEY, None)))
        mean = recent.mean()
        if mean is not None:
            runners[MEAN_KEY] = mean
    evaluation = results.get("evaluation")
    if isinstance(evaluation, dict) and isinstance(evaluation.get(ENV_RUNNERS), dict):
        evaluation[ENV_RUNNERS].pop(RETURNS_KEY, None)
    return results


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if hasattr(value, "peek"):  # a Stats object that was not reduced to its items
        value = value.peek()
    if isinstance(value, (list, tuple, deque)):
        return list(value)
    return [value]


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
