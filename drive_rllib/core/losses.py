"""One function per equation of DRIVE, and the one place that sums them.

Every loss function takes tensors and plain values and returns unreduced
per-sample terms ([B]). ``combine_terms`` is the only place where terms are
reduced, weighted (``loss_weights``) and summed; it asserts that the names of
the terms and of the weights match.

``update_terms`` runs one DRIVE update step (spec, Section 4: model, Eq. 6,
Eq. 4, and Eq. 5 when distilling) on a batch of real transitions and routes
gradients so that ONE backward of the combined loss gives every parameter
group exactly its own gradient:

| term                       | reaches               | held fixed by                            |
|----------------------------|-----------------------|------------------------------------------|
| model, termination         | f_hat                 | inputs are data                          |
| return, kl_prior, kl_value | q_phi (and pi_theta)  | f_hat, psi evaluated with frozen params  |
| distill (Eq. 5)            | pi_theta              | q_phi outputs detached                   |
| value (Eq. 4)              | psi                   | target law built under no_grad           |
| entropy                    | pi_theta              | entropy weight detached                  |
| entropy_weight             | entropy floor weight  | log pi detached                          |

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
    tanh_gaussian_action,
    tanh_gaussian_rsample,
)
from drive_rllib.core.imagine import balanced_member_assignment, ensemble_step, imagine
from drive_rllib.core.networks import DRIVENetworks, frozen_call

POLICY_UPDATES = ("joint", "distill")
VALUE_LOSSES = ("split", "cross_entropy")


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
    m: Tensor, v: Tensor, mu: Tensor, sigma: Tensor, value_loss: str = "split"
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
        m, v: [N, B] target components.
        mu, sigma: [B] p_psi(U | s, a) at the replayed (s, a).
    """
    m, v = m.detach(), v.detach()
    if value_loss == "cross_entropy":
        return {"value": gaussian_cross_entropy(m, v, mu, sigma).mean(0)}
    if value_loss == "split":
        return {
            "value_mean": 0.5 * (mu - m.mean(0)).square(),
            "value_sigma": gaussian_cross_entropy(m, v, mu.detach(), sigma).mean(0),
        }
    raise ValueError(f"value_loss must be one of {VALUE_LOSSES}, got {value_loss!r}")


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


@torch.no_grad()
def value_target(
    nets: DRIVENetworks,
    normalize,
    elite_params: list[tuple[Tensor, Tensor]],
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
    pi_theta and f_hat (the members in ``elite_params``), bootstrapped with
    the target value psi_bar. With H = 1 this is exactly the distributional TD
    target N(r + gamma mu_bar(s', a'), gamma^2 sigma_bar(s', a')^2), a' ~ pi_theta(s').

    Returns:
        (m, v), each [N, B].
    """

    def policy(o: Tensor) -> Tensor:
        return tanh_gaussian_action(*nets.prior(normalize(o)))

    def target_value(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return nets.target_value(normalize(o), a)

    next_m, next_v = imagine(
        next_obs, None, horizon=horizon - 1, num_samples=num_samples, gamma=gamma,
        model_step=lambda o, a: ensemble_step(nets.model, elite_params, normalize, o, a),
        policy=policy, value=target_value,
    )
    return value_target_law(reward, terminated, next_m, next_v, gamma)


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


def loss_weights(
    alpha: float, policy_update: str = "joint", value_loss: str = "split", entropy_floor: bool = True,
    learn_termination: bool = True,
) -> dict[str, float]:
    """The weight of every term of one update step; keys must equal ``update_terms``' keys."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if policy_update not in POLICY_UPDATES:
        raise ValueError(f"policy_update must be one of {POLICY_UPDATES}, got {policy_update!r}")
    weights = {"model": 1.0, "return": -1.0 / alpha, "kl_prior": 1.0, "kl_value": 1.0}
    if learn_termination:
        weights["termination"] = 1.0
    if policy_update == "distill":
        weights["distill"] = 1.0
    if value_loss == "split":
        weights.update(value_mean=1.0, value_sigma=1.0)
    elif value_loss == "cross_entropy":
        weights["value"] = 1.0
    else:
        raise ValueError(f"value_loss must be one of {VALUE_LOSSES}, got {value_loss!r}")
    if entropy_floor:
        weights.update(entropy=1.0, entropy_weight=1.0)
    return weights


def combine_terms(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_k weights[k] * mean(terms[k]); the names of terms and weights must match exactly.

    Raises:
        KeyError: a term without a weight or a weight without a term.
        FloatingPointError: a term is NaN or infinite (names the terms).
    """
    if set(terms) != set(weights):
        raise KeyError(
            f"loss terms and weights differ: terms without weight {sorted(set(terms) - set(weights))}, "
            f"weights without term {sorted(set(weights) - set(terms))}"
        )
    means = {name: term.mean() for name, term in terms.items()}
    total = sum(weights[name] * value for name, value in means.items())
    if not torch.isfinite(total):
        bad = sorted(name for name, value in means.items() if not torch.isfinite(value))
        raise FloatingPointError(
            f"non-finite DRIVE loss terms {bad}: lower the learning rates, check the "
            "observations/rewards for NaN or inf, or raise sigma_min"
        )
    return total


# --- One update step --------------------------------------------------------------------------


def update_terms(
    nets: DRIVENetworks,
    batch: dict[str, Tensor],
    *,
    horizon: int,
    num_samples: int,
    gamma: float,
    policy_update: str = "joint",
    value_loss: str = "split",
    member_per_trajectory: bool = False,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """All terms of one DRIVE update step (model, Eq. 6, Eq. 5 if distilling, Eq. 4).

    Args:
        nets: the networks.
        batch: real transitions: obs [B, S], action [B, A] (in [-1, 1]), reward [B],
            next_obs [B, S], terminated [B] (float 0/1).
        horizon: H >= 1 model steps in Eq. 6; Eq. 4 uses the real first step + H-1.
        num_samples: N >= 1 imagined trajectories per start state.
        gamma: discount.
        policy_update: "joint" (theta and phi by Eq. 6) or "distill" (phi by
            Eq. 6 with theta fixed, theta by Eq. 5).
        value_loss: "split" or "cross_entropy" (see ``value_terms``).
        member_per_trajectory: keep one elite member per imagined trajectory
            (default False: a random elite member at every model step, as the spec says).

    Returns:
        (terms, metrics): terms for ``combine_terms`` ([B] each); metrics are
        detached scalars under slash-grouped names.
    """
    if horizon < 1 or num_samples < 1:
        raise ValueError(f"need horizon >= 1 and num_samples >= 1, got {horizon}, {num_samples}")
    if policy_update not in POLICY_UPDATES:
        raise ValueError(f"policy_update must be one of {POLICY_UPDATES}, got {policy_update!r}")
    obs, action, reward = batch["obs"], batch["action"], batch["reward"]
    next_obs, terminated = batch["next_obs"], batch["terminated"]
    normalize = nets.obs_normalizer.frozen(obs.dtype)
    obs_n = normalize(obs)
    terms: dict[str, Tensor] = {}

    # Model learning: each member fits its own bootstrap of the batch.
    batch_size = obs.shape[0]
    model = nets.model
    boot = torch.randint(batch_size, (model.num_members, batch_size), device=obs.device)
    mean, log_std, term_logit = model(obs_n[boot], action[boot])
    target = torch.cat([next_obs - obs, reward.unsqueeze(-1)], dim=-1)[boot]
    terms.update(
        model_terms(mean, log_std, term_logit, target, terminated[boot], model.learn_termination)
    )

    # Eq. 6. pi_theta is trained here in "joint" mode and held fixed in "distill" mode.
    joint = policy_update == "joint"
    prior_call = (lambda *a: nets.prior(*a)) if joint else (lambda *a: frozen_call(nets.prior, *a))

    def policy(o: Tensor) -> Tensor:
        return tanh_gaussian_action(*prior_call(normalize(o)))

    num_elites = model.elite_idx.shape[0]
    assignment = None
    if member_per_trajectory:
        assignment = balanced_member_assignment(batch_size * num_samples, num_elites, obs.device)

    # f_hat held fixed in Eq. 6 and Eq. 4: detached elite parameters, gathered once.
    elite_params = model.layer_params(model.elite_idx, frozen=True)

    def model_step(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return ensemble_step(model, elite_params, normalize, o, a, assignment)

    def frozen_value(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return frozen_call(nets.value, normalize(o), a)

    posterior_mean, posterior_std = nets.posterior(obs_n)
    first_action, _ = tanh_gaussian_rsample(posterior_mean, posterior_std)
    prior_mean, prior_std = nets.prior(obs_n)
    # J_KL1 reaches theta only in "joint" mode (obs_n is data, so detaching the outputs is exact).
    kl_prior_mean, kl_prior_std = (
        (prior_mean, prior_std) if joint else (prior_mean.detach(), prior_std.detach())
    )
    m, v = imagine(
        obs, first_action, horizon=horizon, num_samples=num_samples, gamma=gamma,
        model_step=model_step, policy=policy, value=frozen_value,
    )
    value_mu_at_posterior, value_sigma_at_posterior = frozen_call(nets.value, obs_n, first_action)
    terms.update(
        posterior_terms(
            m, v, value_mu_at_posterior, value_sigma_at_posterior,
            posterior_mean, posterior_std, kl_prior_mean, kl_prior_std, nets.sigma_min,
        )
    )

    # Eq. 5 and the entropy floor act on pi_theta directly.
    if not joint:
        terms.update(distill_terms(prior_mean, prior_std, posterior_mean, posterior_std))
    _, prior_log_prob = tanh_gaussian_rsample(prior_mean, prior_std)
    floor = nets.entropy_floor
    if floor is not None:
        terms.update(
            entropy_floor_terms(prior_log_prob, floor.weight, floor.log_weight, floor.target_entropy)
        )

    # Eq. 4: the target law from the real first step, then H-1 imagined steps, psi_bar bootstrap.
    target_m, target_v = value_target(
        nets, normalize, elite_params, reward, next_obs, terminated,
        horizon=horizon, num_samples=num_samples, gamma=gamma,
    )
    value_mu, value_sigma = nets.value(obs_n, action)
    terms.update(value_terms(target_m, target_v, value_mu, value_sigma, value_loss))

    with torch.no_grad():
        metrics = {
            "loss/model_nll": terms["model"].mean() / model.num_members,
            "loss/value_cross_entropy": gaussian_cross_entropy(
                target_m, target_v, value_mu, value_sigma
            ).mean(),
            "value/mu": value_mu.mean(),
            "value/sigma": value_sigma.mean(),
            "value/target_mean": target_m.mean(),
            "value/target_std": target_v.mean().sqrt(),
            "posterior/J_U": terms["return"].mean(),
            "kl/prior": terms["kl_prior"].mean(),
            "kl/value": terms["kl_value"].mean(),
            "policy/entropy": -prior_log_prob.mean(),
            "policy/std": prior_std.mean(),
            "posterior/std": posterior_std.mean(),
        }
        if "termination" in terms:
            metrics["loss/termination"] = terms["termination"].mean() / model.num_members
        if "distill" in terms:
            metrics["kl/distill"] = terms["distill"].mean()
        if floor is not None:
            metrics["entropy_floor/weight"] = floor.weight.detach()
    return terms, metrics
