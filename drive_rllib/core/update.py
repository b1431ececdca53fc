"""One DRIVE update step (spec, Section 4) as named steps over `DRIVENetworks`.

``update_terms`` runs, in this order (the order fixes the random draws):

1. ``model_fit``: each ensemble member fits its own bootstrap of the batch;
2. ``imagination``: what the rollouts share (elite parameters, member assignment);
3. ``posterior_step``: Eq. 6 from a_t ~ q_phi, H imagined steps, psi held fixed;
4. Eq. 5 (``distill_terms``) when ``policy_update="distill"``;
5. ``entropy_floor_step``: the floor on pi_theta and its weight;
6. ``value_step``: Eq. 4 against ``value_target``'s law (real step + H-1 imagined);
7. ``update_diagnostics``: detached batch means under `drive_rllib.keys`.

Gradients are routed so that ONE backward of the combined loss gives every
parameter group exactly its own gradient (tested in ``tests/core/test_routing.py``):

| term                       | reaches               | held fixed by                            |
|----------------------------|-----------------------|------------------------------------------|
| model, termination         | f_hat                 | inputs are data                          |
| return, kl_prior, kl_value | q_phi (and pi_theta)  | f_hat, psi evaluated with frozen params  |
| distill (Eq. 5)            | pi_theta              | q_phi outputs detached                   |
| value (Eq. 4)              | psi                   | target law built under no_grad           |
| entropy                    | pi_theta              | entropy weight detached                  |
| entropy_weight             | entropy floor weight  | log pi detached                          |

Symbols: ``gamma`` discount, ``H`` horizon, ``N`` samples. Shapes: ``B`` batch,
``E`` members, ``S``/``A`` dims.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from drive_rllib import keys
from drive_rllib.core.distributions import (
    gaussian_cross_entropy,
    tanh_gaussian_action,
    tanh_gaussian_rsample,
)
from drive_rllib.core.imagine import (
    ModelStep,
    Policy,
    ValueFn,
    balanced_member_assignment,
    ensemble_step,
    imagine,
)
from drive_rllib.core.losses import (
    distill_terms,
    entropy_floor_terms,
    model_terms,
    posterior_terms,
    value_target_law,
    value_terms,
)
from drive_rllib.core.networks import DRIVENetworks, DynamicsEnsemble, frozen_call
from drive_rllib.core.spec import PolicyUpdate, UpdateSpec

Normalize = Callable[[Tensor], Tensor]
ElitePairs = list[tuple[Tensor, Tensor]]


def update_terms(
    nets: DRIVENetworks, batch: dict[str, Tensor], spec: UpdateSpec
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """All terms of one DRIVE update step (model, Eq. 6, Eq. 5 if distilling, Eq. 4).

    Args:
        nets: the networks.
        batch: real transitions: obs [B, S], action [B, A] (in [-1, 1]), reward [B],
            next_obs [B, S], terminated [B] (float 0/1).
        spec: H, N, gamma, the policy update, the value loss, member sampling.

    Returns:
        (terms, diagnostics): terms for ``combine_terms`` ([B] each, in a fixed
        order); diagnostics are detached scalars under `drive_rllib.keys`.
    """
    obs = batch["obs"]
    normalize = nets.obs_normalizer.frozen(obs.dtype)
    obs_n = normalize(obs)
    terms = model_fit(nets.model, obs_n, batch)
    shared = imagination(nets, normalize, obs.shape[0], obs.device, spec)
    eq6 = posterior_step(nets, obs, obs_n, shared, spec)
    terms.update(eq6.terms)
    if spec.policy_update is PolicyUpdate.DISTILL:
        terms.update(
            distill_terms(eq6.prior_mean, eq6.prior_std, eq6.posterior_mean, eq6.posterior_std)
        )
    floor_terms, prior_log_prob = entropy_floor_step(nets, eq6.prior_mean, eq6.prior_std)
    terms.update(floor_terms)
    eq4 = value_step(nets, normalize, obs_n, shared.elite_params, batch, spec)
    terms.update(eq4.terms)
    return terms, update_diagnostics(nets, terms, eq6, eq4, prior_log_prob)


# --- 1. model learning --------------------------------------------------------------------------


def model_fit(
    model: DynamicsEnsemble, obs_n: Tensor, batch: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Model learning: every member's NLL on its own bootstrap of the batch (``model_terms``)."""
    obs, action = batch["obs"], batch["action"]
    batch_size = obs.shape[0]
    boot = torch.randint(batch_size, (model.num_members, batch_size), device=obs.device)
    mean, log_std, term_logit = model(obs_n[boot], action[boot])
    target = torch.cat([batch["next_obs"] - obs, batch["reward"].unsqueeze(-1)], dim=-1)[boot]
    return model_terms(
        mean, log_std, term_logit, target, batch["terminated"][boot], model.learn_termination
    )


# --- 2. what the rollouts share -----------------------------------------------------------------


@dataclass
class Imagination:
    """The callables Eq. 6's rollouts run on, and the elite parameters Eq. 4 reuses."""

    elite_params: ElitePairs  # f_hat's elites, detached: f_hat held fixed
    model_step: ModelStep
    policy: Policy  # pi_theta; held fixed with policy_update="distill"
    value: ValueFn  # p_psi with psi held fixed, for raw observations


def imagination(
    nets: DRIVENetworks,
    normalize: Normalize,
    batch_size: int,
    device: torch.device,
    spec: UpdateSpec,
) -> Imagination:
    """Eq. 6's model step, policy and value; the elite members' parameters gathered once."""
    joint = spec.policy_update is PolicyUpdate.JOINT
    prior_call = (lambda *a: nets.prior(*a)) if joint else (lambda *a: frozen_call(nets.prior, *a))

    def policy(o: Tensor) -> Tensor:
        return tanh_gaussian_action(*prior_call(normalize(o)))

    model = nets.model
    assignment = None
    if spec.member_per_trajectory:
        num_elites = model.elite_idx.shape[0]
        assignment = balanced_member_assignment(batch_size * spec.num_samples, num_elites, device)
    elite_params = model.layer_params(model.elite_idx, frozen=True)

    def model_step(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return ensemble_step(model, elite_params, normalize, o, a, assignment)

    def frozen_value(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return frozen_call(nets.value, normalize(o), a)

    return Imagination(elite_params, model_step, policy, frozen_value)


# --- 3. Eq. 6: posterior + policy ---------------------------------------------------------------


@dataclass
class PosteriorStep:
    """Eq. 6's terms, and the pre-squash Gaussians of q_phi and pi_theta at the batch states."""

    terms: dict[str, Tensor]
    posterior_mean: Tensor
    posterior_std: Tensor
    prior_mean: Tensor
    prior_std: Tensor


def posterior_step(
    nets: DRIVENetworks, obs: Tensor, obs_n: Tensor, shared: Imagination, spec: UpdateSpec
) -> PosteriorStep:
    """Eq. 6: a_t ~ q_phi, N rollouts of H steps in f_hat, J_U, J_KL1, J_KL2 (``posterior_terms``).

    pi_theta is trained here with ``policy_update="joint"`` and held fixed with "distill".
    """
    posterior_mean, posterior_std = nets.posterior(obs_n)
    first_action, _ = tanh_gaussian_rsample(posterior_mean, posterior_std)
    prior_mean, prior_std = nets.prior(obs_n)
    # J_KL1 reaches theta only in "joint" mode (obs_n is data, so detaching the outputs is exact).
    joint = spec.policy_update is PolicyUpdate.JOINT
    kl_prior_mean, kl_prior_std = (
        (prior_mean, prior_std) if joint else (prior_mean.detach(), prior_std.detach())
    )
    m, v = imagine(
        obs,
        first_action,
        horizon=spec.horizon,
        num_samples=spec.num_samples,
        gamma=spec.gamma,
        model_step=shared.model_step,
        policy=shared.policy,
        value=shared.value,
    )
    value_mu, value_sigma = frozen_call(nets.value, obs_n, first_action)
    terms = posterior_terms(
        m,
        v,
        value_mu,
        value_sigma,
        posterior_mean,
        posterior_std,
        kl_prior_mean,
        kl_prior_std,
        nets.sigma_min,
    )
    return PosteriorStep(terms, posterior_mean, posterior_std, prior_mean, prior_std)


# --- 5. entropy floor ---------------------------------------------------------------------------


def entropy_floor_step(
    nets: DRIVENetworks, prior_mean: Tensor, prior_std: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """The entropy floor's terms (none without a floor) and log pi_theta of a fresh sample [B]."""
    _, prior_log_prob = tanh_gaussian_rsample(prior_mean, prior_std)
    floor = nets.entropy_floor
    if floor is None:
        return {}, prior_log_prob
    terms = entropy_floor_terms(
        prior_log_prob, floor.weight, floor.log_weight, floor.target_entropy
    )
    return terms, prior_log_prob


# --- 6. Eq. 4: value ----------------------------------------------------------------------------


@torch.no_grad()
def value_target(
    nets: DRIVENetworks,
    normalize: Normalize,
    elite_params: ElitePairs,
    reward: Tensor,
    next_obs: Tensor,
    terminated: Tensor,
    *,
    horizon: int,
    num_samples: int,
    gamma: float,
) -> tuple[Tensor, Tensor]:
    """Eq. 4's target law for real transitions, without gradient.

    The real first step (r, s', done) is followed by H-1 imagined steps under
    pi_theta and f_hat (the members in ``elite_params``, a random one per
    step), bootstrapped with the target value psi_bar. With H = 1 this is
    exactly the distributional TD target N(r + gamma mu_bar(s', a'),
    gamma^2 sigma_bar(s', a')^2), a' ~ pi_theta(s').

    Returns:
        (m, v), each [N, B].
    """

    def policy(o: Tensor) -> Tensor:
        return tanh_gaussian_action(*nets.prior(normalize(o)))

    def target_value(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return nets.target_value(normalize(o), a)

    next_m, next_v = imagine(
        next_obs,
        None,
        horizon=horizon - 1,
        num_samples=num_samples,
        gamma=gamma,
        model_step=lambda o, a: ensemble_step(nets.model, elite_params, normalize, o, a),
        policy=policy,
        value=target_value,
    )
    return value_target_law(reward, terminated, next_m, next_v, gamma)


@dataclass
class ValueStep:
    """Eq. 4's terms, its target law and p_psi at the replayed (s, a)."""

    terms: dict[str, Tensor]
    target_m: Tensor  # [N, B]
    target_v: Tensor  # [N, B]
    value_mu: Tensor  # [B]
    value_sigma: Tensor  # [B]


def value_step(
    nets: DRIVENetworks,
    normalize: Normalize,
    obs_n: Tensor,
    elite_params: ElitePairs,
    batch: dict[str, Tensor],
    spec: UpdateSpec,
) -> ValueStep:
    """Eq. 4: p_psi(U | s, a) at the replayed (s, a) against ``value_target`` (``value_terms``)."""
    target_m, target_v = value_target(
        nets,
        normalize,
        elite_params,
        batch["reward"],
        batch["next_obs"],
        batch["terminated"],
        horizon=spec.horizon,
        num_samples=spec.num_samples,
        gamma=spec.gamma,
    )
    value_mu, value_sigma = nets.value(obs_n, batch["action"])
    terms = value_terms(target_m, target_v, value_mu, value_sigma, spec.value_loss)
    return ValueStep(terms, target_m, target_v, value_mu, value_sigma)


# --- 7. diagnostics -----------------------------------------------------------------------------


@torch.no_grad()
def update_diagnostics(
    nets: DRIVENetworks,
    terms: dict[str, Tensor],
    eq6: PosteriorStep,
    eq4: ValueStep,
    prior_log_prob: Tensor,
) -> dict[str, Tensor]:
    """Detached batch means of one update step, under `drive_rllib.keys` (terms excluded:
    the Learner logs those itself)."""
    num_members = nets.model.num_members
    diagnostics = {
        keys.MODEL_NLL_PER_MEMBER: terms["model"].mean() / num_members,
        keys.VALUE_CROSS_ENTROPY: gaussian_cross_entropy(
            eq4.target_m, eq4.target_v, eq4.value_mu, eq4.value_sigma
        ).mean(),
        keys.VALUE_MU: eq4.value_mu.mean(),
        keys.VALUE_SIGMA: eq4.value_sigma.mean(),
        keys.VALUE_TARGET_MEAN: eq4.target_m.mean(),
        keys.VALUE_TARGET_STD: eq4.target_v.mean().sqrt(),
        keys.POLICY_ENTROPY: -prior_log_prob.mean(),
        keys.POLICY_STD: eq6.prior_std.mean(),
        keys.POSTERIOR_STD: eq6.posterior_std.mean(),
    }
    if "termination" in terms:
        diagnostics[keys.MODEL_TERMINATION_PER_MEMBER] = terms["termination"].mean() / num_members
    if nets.entropy_floor is not None:
        diagnostics[keys.ENTROPY_FLOOR_WEIGHT] = nets.entropy_floor.weight.detach()
    return diagnostics
