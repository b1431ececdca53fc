"""One function per equation of DRIVE, the weight of each term, and the one place that sums them.

Every loss function takes tensors and plain values and returns unreduced
per-sample terms ([B]). ``combine_terms`` is the only place where terms are
reduced, weighted (``loss_weights``) and summed; it asserts that the names of
the terms and of the weights match. ``drive_rllib.core.update`` runs these
functions on the networks, one update step at a time, with gradients routed
so that one backward is correct.

Symbols: ``gamma`` discount, ``alpha`` temperature of exp(U / alpha), ``H``
horizon, ``N`` samples. Shapes: ``B`` batch, ``E`` members, ``S``/``A`` dims.
"""

from __future__ import annotations

import torch
from torch import Tensor

from drive_rllib.core.distributions import (
    LOG_2PI,
    diag_gaussian_kl,
    gaussian_cross_entropy,
    gaussian_kl,
    moment_match,
)
from drive_rllib.core.spec import NetworkSpec, PolicyUpdate, UpdateSpec, ValueLoss

# --- Model learning ---------------------------------------------------------------------------


def model_terms(
    mean: Tensor,
    log_std: Tensor,
    term_logit: Tensor,
    target: Tensor,
    terminated: Tensor,
    learn_termination: bool = True,
) -> dict[str, Tensor]:
    """Model loss: Gaussian NLL of (s' - s, r) plus termination cross-entropy, per member.

    Args:
        mean, log_std: [E, B, S+1] predictions of each member on its own bootstrap.
        term_logit: [E, B] termination logits.
        target: [E, B, S+1] the real (s' - s, r) of those rows.
        terminated: [E, B] real termination flags (0/1).
        learn_termination: include the termination cross-entropy.

    Returns:
        {"model": [B], "termination": [B]}: summed over members (each member
        fits its own data) and over output dims; NLL includes 0.5 log 2 pi.
    """
    nll = 0.5 * ((target - mean) * torch.exp(-log_std)).square() + log_std + 0.5 * LOG_2PI
    terms = {"model": nll.sum(-1).sum(0)}
    if learn_termination:
        ce = torch.nn.functional.binary_cross_entropy_with_logits(
            term_logit, terminated, reduction="none"
        )
        terms["termination"] = ce.sum(0)
    return terms


# --- Eq. 6: posterior + policy ----------------------------------------------------------------


def posterior_terms(
    m: Tensor,
    v: Tensor,
    value_mu: Tensor,
    value_sigma: Tensor,
    posterior_mean: Tensor,
    posterior_std: Tensor,
    prior_mean: Tensor,
    prior_std: Tensor,
    sigma_min: float,
) -> dict[str, Tensor]:
    """Eq. 6 terms: J(theta, phi) = -J_U / alpha + J_KL1 + J_KL2 (weights in ``loss_weights``).

    Args:
        m, v: [N, B] return laws N(m_i, v_i) of the N imagined trajectories from (s, a_t).
        value_mu, value_sigma: [B] p_psi(U | s, a_t), psi held fixed (gradient via a_t only).
        posterior_mean, posterior_std: [B, A] pre-squash q_phi(. | s).
        prior_mean, prior_std: [B, A] pre-squash pi_theta(. | s).
        sigma_min: floor of the target law's standard deviation (same as p_psi's).

    Returns:
        {"return": J_U [B], "kl_prior": J_KL1 [B], "kl_value": J_KL2 [B]} where
        J_U = mean_i m_i; J_KL1 = KL(q_phi || pi_theta) in closed form on the
        pre-squash Gaussians (KL is invariant under the shared tanh);
        J_KL2 = KL(N(m_bar, v_bar) || p_psi) with the moment-matched target law
        (for N = 1 the single component) and v_bar floored at sigma_min^2.
    """
    target_mean, target_var = moment_match(m, v)
    target_std = target_var.clamp_min(sigma_min**2).sqrt()
    return {
        "return": m.mean(0),
        "kl_prior": diag_gaussian_kl(posterior_mean, posterior_std, prior_mean, prior_std),
        "kl_value": gaussian_kl(target_mean, target_std, value_mu, value_sigma),
    }


# --- Eq. 5: distillation ----------------------------------------------------------------------


def distill_terms(
    prior_mean: Tensor, prior_std: Tensor, posterior_mean: Tensor, posterior_std: Tensor
) -> dict[str, Tensor]:
    """Eq. 5: {"distill": KL(pi_theta(. | s) || q_phi(. | s)) [B]}, q_phi held fixed (detached here)."""
    return {
        "distill": diag_gaussian_kl(
            prior_mean, prior_std, posterior_mean.detach(), posterior_std.detach()
        )
    }


# --- Eq. 4: value -----------------------------------------------------------------------------


def value_terms(
    m: Tensor, v: Tensor, mu: Tensor, sigma: Tensor, value_loss: ValueLoss | str = ValueLoss.SPLIT
) -> dict[str, Tensor]:
    """Eq. 4: cross-entropy of p_psi to the target law (1/N) sum_i N(m_i, v_i).

    The cross-entropy is linear in the target law, so it is the exact closed
    form per component averaged over N (no moment matching). Targets carry no
    gradient (detached here).

    ``value_loss="cross_entropy"``: {"value": CE}.
    ``value_loss="split"`` (spec, Section 6, value scale): the same fixed
    point reached with the mean learned by squared error to the target mean
    and sigma by the cross-entropy with the mean held fixed:
    {"value_mean": 0.5 (mu - mean_i m_i)^2, "value_sigma": CE(mu detached)}.

    Args:
        m, v: [N, B] target components (or [N, 1, B] against K heads).
        mu, sigma: [B] p_psi(U | s, a) at the replayed (s, a) (or [K, B]: K heads, the
            terms then [K, B]).
    """
    m, v = m.detach(), v.detach()
    if ValueLoss(value_loss) is ValueLoss.CROSS_ENTROPY:
        return {"value": gaussian_cross_entropy(m, v, mu, sigma).mean(0)}
    return {
        "value_mean": 0.5 * (mu - m.mean(0)).square(),
        "value_sigma": gaussian_cross_entropy(m, v, mu.detach(), sigma).mean(0),
    }


def value_target_law(
    reward: Tensor, terminated: Tensor, next_m: Tensor, next_v: Tensor, gamma: float
) -> tuple[Tensor, Tensor]:
    """The target law of Eq. 4 from a real first step: N(r + gamma (1-d) m', gamma^2 (1-d) v').

    Args:
        reward, terminated: [B] the real step's reward and termination flag.
        next_m, next_v: [N, B] return laws of H-1 imagined steps from s'
            (with H = 1 these are mu(s', a'), sigma(s', a')^2 of the target value).

    Returns:
        (m, v), each [N, B].
    """
    continue_ = 1.0 - terminated
    return reward + gamma * continue_ * next_m, gamma**2 * continue_ * next_v


# --- Entropy floor ----------------------------------------------------------------------------


def entropy_floor_terms(
    log_prob: Tensor, weight: Tensor, log_weight: Tensor, target_entropy: Tensor
) -> dict[str, Tensor]:
    """Entropy floor on pi_theta with its weight tuned toward a target entropy (as SAC's alpha).

    Args:
        log_prob: [B] log pi_theta(a | s) of reparameterised samples a ~ pi_theta.
        weight, log_weight: the floor's weight and its log (the learnable scalar).
        target_entropy: the entropy below which the weight grows.

    Returns:
        {"entropy": weight * log pi [B] (reaches theta), "entropy_weight":
        -log_weight * (log pi + target) [B] (reaches the weight only)}.
    """
    return {
        "entropy": weight.detach() * log_prob,
        "entropy_weight": -log_weight * (log_prob.detach() + target_entropy),
    }


# --- Summing ----------------------------------------------------------------------------------


def loss_weights(update: UpdateSpec, networks: NetworkSpec) -> dict[str, float]:
    """The weight of every term of one update step; its keys equal ``update_terms``' keys.

    All weights are 1 but J_U's, -1 / alpha (Eq. 6). Which terms exist follows
    the policy update (Eq. 5 when distilling), the value loss, the termination
    head and the entropy floor.
    """
    weights = {"model": 1.0, "return": -1.0 / update.alpha, "kl_prior": 1.0, "kl_value": 1.0}
    if networks.learn_termination:
        weights["termination"] = 1.0
    if update.policy_update is PolicyUpdate.DISTILL:
        weights["distill"] = 1.0
    if update.value_loss is ValueLoss.SPLIT:
        weights.update(value_mean=1.0, value_sigma=1.0)
    else:
        weights["value"] = 1.0
    if networks.entropy_floor:
        weights.update(entropy=1.0, entropy_weight=1.0)
    return weights


def combine_terms(
    terms: dict[str, Tensor], weights: dict[str, float], check_finite: bool = True
) -> Tensor:
    """sum_k weights[k] * mean(terms[k]); the names of terms and weights must match exactly.

    ``check_finite=False`` returns a NaN/inf total as it is (a caller that skips
    such a step still needs the total for a consistent backward under DDP).

    Raises:
        KeyError: a term without a weight or a weight without a term.
        FloatingPointError: a term is NaN or infinite (names the terms).
    """
    means = {name: term.mean() for name, term in terms.items()}
    return combine_means(means, weights, check_finite)


def combine_means(
    means: dict[str, Tensor], weights: dict[str, float], check_finite: bool = True
) -> Tensor:
    """``combine_terms`` of terms already reduced to their batch means (scalars)."""
    if set(means) != set(weights):
        raise KeyError(
            f"loss terms and weights differ: terms without weight {sorted(set(means) - set(weights))}, "
            f"weights without term {sorted(set(weights) - set(means))}"
        )
    total = sum(weights[name] * value for name, value in means.items())
    if check_finite and not torch.isfinite(total):
        bad = sorted(name for name, value in means.items() if not torch.isfinite(value))
        raise FloatingPointError(
            f"non-finite DRIVE loss terms {bad}: lower the learning rates, check the "
            "observations/rewards for NaN or inf, or raise sigma_min"
        )
    return total
