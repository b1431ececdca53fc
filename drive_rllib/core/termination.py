"""Known termination rules: a task's own "fell over" check as a function of the next observation.

Hopper, Walker2d and Ant end an episode when the body is no longer healthy. The rule is
public (Gymnasium's ``is_healthy``), so imagined rollouts can apply it to imagined states
instead of learning it (MBPO, mbrl-lib and DHMBPO do so). A rule maps next observations
[M, S] to a bool tensor [M], True where the episode ends (spec, Section 6, "termination").

Each rule here is written from Gymnasium v5's ``is_healthy`` of the task and reads the
env's own settings (``healthy_z_range``, ...; the env's defaults otherwise) from its
``env_config``: `rule_for(env_id, env_config)` gives the rule of a registered env, and
`register_termination` adds one for a user env. What the observation cannot show is not
checked: Hopper-v5 tests its unclipped velocities against ``healthy_state_range``, while
its observation clips them to [-10, 10] (so a rule on the observation never sees a
velocity of 100).

Each built-in rule also has a margin (`margin_of`): the signed distance, in observation
units, of the next observation to the nearest bound the rule checks (> 0 inside the
healthy set). ``termination_gradient_width`` (`UpdateSpec`) smooths the rule with it
for Eq. 6's gradient: the rule's 0/1 mask has none, so without it a fall within H moves
Eq. 6's value but never its gradient.

Torch only; no gymnasium import (the env ids are plain strings).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

TerminationRule = Callable[[Tensor], Tensor]
"""next_obs [M, S] -> terminated [M] (bool)."""

RuleFactory = Callable[[Mapping[str, Any]], TerminationRule | None]
"""env_config -> the rule for an env made with that config (None: the env never terminates)."""


def _range(
    config: Mapping[str, Any], name: str, default: tuple[float, float]
) -> tuple[float, float]:
    low, high = config.get(name, default)
    return float(low), float(high)


def _inside(value: Tensor, low: float, high: float) -> Tensor:
    """low < value < high (open bounds, as Gymnasium's ``is_healthy``)."""
    return (value > low) & (value < high)


def hopper_terminated(
    next_obs: Tensor,
    *,
    offset: int,
    z_range: tuple[float, float],
    angle_range: tuple[float, float],
    state_range: tuple[float, float],
) -> Tensor:
    """Hopper-v5: not (z in z_range and angle in angle_range and every state entry in
    state_range). The observation is [qpos[1:] (z, angle, 3 joints), qvel (6, clipped)]
    (``offset`` 1 when it also holds x); the state checked is everything after z."""
    z, angle, state = next_obs[:, offset], next_obs[:, offset + 1], next_obs[:, offset + 1 :]
    healthy = (
        _inside(z, *z_range)
        & _inside(angle, *angle_range)
        & _inside(state, *state_range).all(dim=-1)
    )
    return ~healthy


def walker2d_terminated(
    next_obs: Tensor,
    *,
    offset: int,
    z_range: tuple[float, float],
    angle_range: tuple[float, float],
) -> Tensor:
    """Walker2d-v5: not (z in z_range and angle in angle_range); z, angle = qpos[1:3]."""
    z, angle = next_obs[:, offset], next_obs[:, offset + 1]
    return ~(_inside(z, *z_range) & _inside(angle, *angle_range))


def ant_terminated(next_obs: Tensor, *, offset: int, z_range: tuple[float, float]) -> Tensor:
    """Ant-v5: not (every entry finite and z_min <= z <= z_max), z = qpos[2] (closed bounds,
    as Ant-v5's ``is_healthy``). ``offset`` is 2 when the observation holds x and y."""
    z = next_obs[:, offset]
    healthy = torch.isfinite(next_obs).all(dim=-1) & (z >= z_range[0]) & (z <= z_range[1])
    return ~healthy


def _margin(value: Tensor, low: float, high: float) -> Tensor:
    """Distance of ``value`` to the nearer of low and high (> 0 between them)."""
    return torch.minimum(value - low, high - value)


def hopper_margin(
    next_obs: Tensor,
    *,
    offset: int,
    z_range: tuple[float, float],
    angle_range: tuple[float, float],
    state_range: tuple[float, float],
) -> Tensor:
    """`hopper_terminated`'s margin [M]: the least distance to a bound it checks."""
    z, angle, state = next_obs[:, offset], next_obs[:, offset + 1], next_obs[:, offset + 1 :]
    return torch.minimum(
        torch.minimum(_margin(z, *z_range), _margin(angle, *angle_range)),
        _margin(state, *state_range).amin(dim=-1),
    )


def walker2d_margin(
    next_obs: Tensor,
    *,
    offset: int,
    z_range: tuple[float, float],
    angle_range: tuple[float, float],
) -> Tensor:
    """`walker2d_terminated`'s margin [M]."""
    z, angle = next_obs[:, offset], next_obs[:, offset + 1]
    return torch.minimum(_margin(z, *z_range), _margin(angle, *angle_range))


def ant_margin(next_obs: Tensor, *, offset: int, z_range: tuple[float, float]) -> Tensor:
    """`ant_terminated`'s margin [M] (of z; a non-finite entry has no distance)."""
    return _margin(next_obs[:, offset], *z_range)


_MARGINS: dict[Callable[..., Tensor], Callable[..., Tensor]] = {
    hopper_terminated: hopper_margin,
    walker2d_terminated: walker2d_margin,
    ant_terminated: ant_margin,
}


def margin_of(rule: TerminationRule | None) -> Callable[[Tensor], Tensor] | None:
    """The margin (next_obs [M, S] -> [M], > 0 where healthy) of a built-in ``rule``, or
    the ``margin`` attribute of a user rule that carries one; None otherwise."""
    if isinstance(rule, functools.partial) and rule.func in _MARGINS:
        return functools.partial(_MARGINS[rule.func], *rule.args, **rule.keywords)
    return getattr(rule, "margin", None)


def smoothed_continue(
    hard: Tensor, next_obs: Tensor, margin: Callable[[Tensor], Tensor], width: float
) -> Tensor:
    """The rule's continue mask ``hard`` (0/1) in value, with the gradient of
    sigmoid(margin(next_obs) / width) (a straight-through estimator).

    The expected mask under a Gaussian next state of mean m is Phi(margin(m) / s): a
    smooth function of m whose gradient the pathwise (reparameterised) estimator misses,
    since the sampled mask is a step. The sigmoid of the margin stands in for it, so Eq.
    6's gradient pushes imagined states away from a bound within ``width`` of it.
    """
    soft = torch.sigmoid(margin(next_obs) / width)
    return hard + (soft - soft.detach())


def _hopper(config: Mapping[str, Any]) -> TerminationRule | None:
    if not config.get("terminate_when_unhealthy", True):
        return None
    return functools.partial(
        hopper_terminated,
        offset=0 if config.get("exclude_current_positions_from_observation", True) else 1,
        z_range=_range(config, "healthy_z_range", (0.7, math.inf)),
        angle_range=_range(config, "healthy_angle_range", (-0.2, 0.2)),
        state_range=_range(config, "healthy_state_range", (-100.0, 100.0)),
    )


def _walker2d(config: Mapping[str, Any]) -> TerminationRule | None:
    if not config.get("terminate_when_unhealthy", True):
        return None
    return functools.partial(
        walker2d_terminated,
        offset=0 if config.get("exclude_current_positions_from_observation", True) else 1,
        z_range=_range(config, "healthy_z_range", (0.8, 2.0)),
        angle_range=_range(config, "healthy_angle_range", (-1.0, 1.0)),
    )


def _ant(config: Mapping[str, Any]) -> TerminationRule | None:
    if not config.get("terminate_when_unhealthy", True):
        return None
    return functools.partial(
        ant_terminated,
        offset=0 if config.get("exclude_current_positions_from_observation", True) else 2,
        z_range=_range(config, "healthy_z_range", (0.2, 1.0)),
    )


def _never(config: Mapping[str, Any]) -> None:
    return None


#: env id -> the factory of its rule. Gymnasium v4 has the same rules and observations
#: for these three (Ant-v4 without contact forces by default: z is its first entry too).
#: HalfCheetah never terminates.
_RULES: dict[str, RuleFactory] = {
    "HalfCheetah-v5": _never,
    "HalfCheetah-v4": _never,
    "Hopper-v5": _hopper,
    "Hopper-v4": _hopper,
    "Walker2d-v5": _walker2d,
    "Walker2d-v4": _walker2d,
    "Ant-v5": _ant,
    "Ant-v4": _ant,
}


def register_termination(env_id: str, factory: RuleFactory) -> None:
    """Register the known termination rule of ``env_id``.

    ``factory(env_config)`` returns the rule (next_obs [M, S] -> bool [M], True where the
    episode ends) or None when that config never terminates. With
    ``termination="auto"`` (the default) or ``"known"``, DRIVE then applies the rule in
    imagination instead of learning a termination head (and nothing terminates where
    the factory returns None). Register in the process that
    builds the config: the rule travels to the Learners inside the config's spec (so it
    must pickle: a module-level function, or a ``functools.partial`` of one).
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable (env_config -> rule), got {factory!r}")
    _RULES[env_id] = factory


def has_rule(env_id: Any) -> bool:
    """Whether ``env_id`` has a registered rule."""
    return isinstance(env_id, str) and env_id in _RULES


def rule_for(env_id: str, env_config: Mapping[str, Any] | None = None) -> TerminationRule | None:
    """The rule of ``env_id`` made with ``env_config`` (None: that env never terminates).

    Raises:
        KeyError: no rule is registered for ``env_id``.
    """
    return _RULES[env_id](dict(env_config or {}))
