"""H-step, N-sample reparameterised rollouts through the learned model.

``imagine`` is written against three callables (model step, policy, value) so
that the caller decides which parameters are held fixed, and so that tests
can plug in closed-form toy dynamics. ``ensemble_step`` turns a
``DynamicsEnsemble`` into such a model step.

For trajectory i of a start row (spec, Section 4):

    m_i = sum_{n<H} gamma^n w_n r_n + gamma^H w_H mu(s_H, a_H)
    v_i = (gamma^H w_H)^2 sigma(s_H, a_H)^2

where ``w_n = prod_{k<n} c_k`` folds the predicted continue probabilities
``c_k = 1 - P(terminated)`` into the discount: a terminated step zeroes the
reward and the bootstrap of everything after it. With an entropy weight
``beta`` (soft returns, ``UpdateSpec.entropy_in_returns``) every action the policy
draws adds ``-beta log pi(a_n | s_n)`` to its step's reward (n >= 1 when the
first action is given; the bootstrap's action a_H too), masked as rewards are:

    m_i = sum_{n<H} gamma^n w_n (r_n - beta log pi(a_n | s_n))
          + gamma^H w_H (mu(s_H, a_H) - beta log pi(a_H | s_H))

With a known termination rule (``core/termination.py``) ``c_k`` is 0 or 1: a
fallen state is absorbing with value 0.

Shapes: ``B`` start rows, ``N`` samples, ``H`` horizon, ``S``/``A`` obs/action dims.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from drive_rllib.core.networks import DynamicsEnsemble
from drive_rllib.core.termination import smoothed_continue

ModelStep = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
"""(obs [M, S], action [M, A]) -> (next_obs [M, S], reward [M], continue_prob [M])."""
Policy = Callable[[Tensor], Tensor]
"""obs [M, S] -> action [M, A] (a reparameterised sample)."""
SoftPolicy = Callable[[Tensor], tuple[Tensor, Tensor]]
"""obs [M, S] -> (action [M, A], log pi(action | obs) [M]) (soft returns)."""
ValueFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(obs [M, S], action [M, A]) -> (mu [M], sigma [M])."""


def imagine(
    start_obs: Tensor,
    first_action: Tensor | None,
    *,
    horizon: int,
    num_samples: int,
    gamma: float,
    model_step: ModelStep,
    policy: Policy | SoftPolicy,
    value: ValueFn,
    entropy_weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Roll out N imagined trajectories of H model steps from each start row.

    Args:
        start_obs: [B, S] start states s_t.
        first_action: [B, A] the action a_t taken at s_t by every trajectory,
            or None to draw it from ``policy`` as every later action.
        horizon: H >= 0 model steps (0 bootstraps the value at the start).
        num_samples: N >= 1 trajectories per start row.
        gamma: discount.
        model_step: one reparameterised model step.
        policy: action sampler for a_{t+1}, ..., a_{t+H}.
        value: the Gaussian value used to bootstrap at (s_{t+H}, a_{t+H}).
        entropy_weight: beta >= 0 of soft returns, or None (plain returns). With it,
            ``policy`` is a `SoftPolicy` and each action it draws adds
            ``-beta log pi(a | s)`` to the reward of its step (the bootstrap's to mu).

    Returns:
        (m, v), each [N, B]: the mean and variance of every trajectory's return law.
    """
    if horizon < 0 or num_samples < 1:
        raise ValueError(f"need horizon >= 0 and num_samples >= 1, got {horizon}, {num_samples}")
    batch = start_obs.shape[0]
    # Sample-major rows: row i * B + b is sample i of start row b.
    obs = start_obs.repeat(num_samples, 1)

    def draw(o: Tensor) -> tuple[Tensor, Tensor | float]:
        """An action of ``policy`` at o and its entropy bonus (0 for plain returns)."""
        if entropy_weight is None:
            return policy(o), 0.0
        action, log_prob = policy(o)
        return action, -entropy_weight * log_prob

    if first_action is None:
        action, bonus = draw(obs)
    else:
        action, bonus = first_action.repeat(num_samples, 1), 0.0  # given: no bonus
    discounted_return = obs.new_zeros(obs.shape[0])
    weight = obs.new_ones(obs.shape[0])  # gamma^n * prod_{k<n} c_k
    for _ in range(horizon):
        obs, reward, continue_prob = model_step(obs, action)
        discounted_return = discounted_return + weight * (reward + bonus)
        weight = weight * gamma * continue_prob
        action, bonus = draw(obs)
    mu, sigma = value(obs, action)
    m = discounted_return + weight * (mu + bonus)
    v = (weight * sigma).square()
    return m.view(num_samples, batch), v.view(num_samples, batch)


def balanced_member_assignment(
    num_rows: int, num_members: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Assign M rows to K members at random, in equal shares, for one batched pass.

    The K members each evaluate ``R = ceil(M / K)`` slots; slot j holds row
    ``order[j]``. Every real row sits in exactly one uniformly random slot
    (``inverse[r]``), so its member ``inverse[r] // R`` is uniform over the K
    members; the ``K R - M`` padding slots repeat rows and are discarded. All
    members run in one batched matmul instead of E passes over every row.

    Returns:
        (order [K * R], inverse [M]).
    """
    rows_per_member = -(-num_rows // num_members)
    perm = torch.randperm(rows_per_member * num_members, device=device)
    # Padding slots repeat a row (any row: their outputs are discarded); the modulo also
    # covers more padding than rows (fewer rows than members).
    order = torch.where(perm < num_rows, perm, perm % num_rows)
    inverse = torch.argsort(perm)[:num_rows]
    return order, inverse


def ensemble_step(
    model: DynamicsEnsemble,
    params: list[tuple[Tensor, Tensor]],
    normalize: Callable[[Tensor], Tensor],
    obs: Tensor,
    action: Tensor,
    assignment: tuple[Tensor, Tensor] | None = None,
    target_affine: tuple[Tensor, Tensor] | None = None,
    termination_rule: Callable[[Tensor], Tensor] | None = None,
    termination_margin: tuple[Callable[[Tensor], Tensor], float] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One reparameterised step of the K members whose ``params`` are given.

    ``normalize`` maps raw observations to the model's inputs (e.g.
    ``RunningNormalizer.frozen()``); ``target_affine`` (mean, std) maps the
    model's standardised (s' - s, r) back to raw units when it predicts them
    standardised (``DRIVENetworks.target_affine``).

    Each row goes to one random member (``balanced_member_assignment``; pass
    the same ``assignment`` at every step to keep one member per trajectory). The
    next state and reward are ``mean + std * eps``, so gradients pass through
    the model's outputs to ``obs`` and ``action``; with frozen ``params``
    (``model.layer_params(elites, frozen=True)``) never into f_hat.

    With a ``termination_rule`` (next_obs -> bool, True where the episode ends) the
    continue probability is 0 where the rule says the imagined next state has ended
    and 1 elsewhere; the termination head is not read. ``termination_margin`` (the rule's
    margin, width) gives that 0/1 mask the gradient of sigmoid(margin / width)
    (`drive_rllib.core.termination.smoothed_continue`); without it the mask has none.

    Returns:
        next_obs [M, S], reward [M], continue probability [M] (ones when the
        model neither learns termination nor has a rule).
    """
    num_rows = obs.shape[0]
    num_members = params[0][0].shape[0]
    if assignment is None:
        assignment = balanced_member_assignment(num_rows, num_members, obs.device)
    order, inverse = assignment
    rows_per_member = order.shape[0] // num_members
    obs_in = normalize(obs)[order].view(num_members, rows_per_member, -1)
    action_in = action[order].view(num_members, rows_per_member, -1)
    mean, log_std, term_logit = model(obs_in, action_in, params)
    out = torch.cat([mean + log_std.exp() * torch.randn_like(mean), term_logit.unsqueeze(-1)], -1)
    out = out.reshape(-1, out.shape[-1])[inverse]
    if target_affine is not None:
        offset, scale = target_affine
        out = torch.cat([offset + scale * out[:, :-1], out[:, -1:]], dim=-1)
    next_obs = obs + out[:, :-2]
    if termination_rule is not None:
        # the rule reads the state, not its gradient: the mask carries none
        continue_prob = (~termination_rule(next_obs.detach())).to(next_obs.dtype)
        if termination_margin is not None:
            continue_prob = smoothed_continue(continue_prob, next_obs, *termination_margin)
    elif model.learn_termination:
        continue_prob = torch.sigmoid(-out[:, -1])
    else:
        continue_prob = torch.ones_like(out[:, -1])
    return next_obs, out[:, -2], continue_prob


@torch.no_grad()
def distribution_rollout(
    start_obs: Tensor, *, horizon: int, model_step: ModelStep, policy: Policy
) -> Tensor:
    """The states of one distribution rollout (DHMBPO): H model steps under ``policy``, no gradient.

    Every start row is rolled out ``horizon`` steps; a row that terminates
    (predicted continue probability below 1/2) contributes no state after
    its termination.

    Args:
        start_obs: [B, S] replayed real states.
        horizon: model steps >= 1.
        model_step: one model step (``ensemble_step`` over the elites).
        policy: the acting policy pi_theta (a sample per state).

    Returns:
        [M, S] every visited state that is not past a termination, the start
        states included (M <= B (H + 1)), in step-major order.
    """
    if horizon < 1:
        raise ValueError(f"need horizon >= 1, got {horizon}")
    obs = start_obs
    alive = torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device)
    states = [obs]
    for _ in range(horizon):
        obs, _, continue_prob = model_step(obs, policy(obs))
        alive = alive & (continue_prob > 0.5) & torch.isfinite(obs).all(-1)
        states.append(obs[alive])
    return torch.cat(states)
