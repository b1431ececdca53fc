"""One DRIVE update step (spec, Section 4) as named steps over `DRIVENetworks`.

``update_terms`` runs, in this order (the order fixes the random draws):

1. ``model_fit``: each ensemble member fits its own bootstrap of the batch (on a step
   that does not fit f_hat, ``held_model_terms`` instead: see ``model_fit_interval``);
2. ``imagination``: what the rollouts share (elite parameters, member assignment);
3. ``posterior_step``: Eq. 6 from a_t ~ q_phi, H imagined steps, psi held fixed;
4. Eq. 5 (``distill_terms``) when ``policy_update="distill"``;
5. ``entropy_floor_step``: the floor on pi_theta and its weight (at Eq. 6's start
   states, at the batch's real states with ``entropy_floor_real_states``, or at its
   ``recent_obs`` with ``entropy_floor_recent_rows``);
6. ``value_step``: Eq. 4 against ``value_target``'s law (real step + H-1 imagined);
7. ``update_diagnostics``: detached batch means under `drive_rllib.keys`.

With ``UpdateSpec.precision`` "bfloat16" (or "auto" on a device with bfloat16
arithmetic) all of it runs under ``torch.autocast`` (``mixed_precision``): the
networks compute in bfloat16 and hand back float32 outputs, so the terms, the
rollout states and the gradients are float32.

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

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from drive_rllib import keys
from drive_rllib.core.distributions import (
    aggregate_heads,
    gaussian_cross_entropy,
    min2_pair,
    tanh_gaussian_action,
    tanh_gaussian_rsample,
)
from drive_rllib.core.imagine import (
    ModelStep,
    Policy,
    SoftPolicy,
    ValueFn,
    balanced_member_assignment,
    distribution_rollout,
    ensemble_step,
    imagine,
)
from drive_rllib.core.losses import (
    combine_means,
    distill_terms,
    entropy_floor_terms,
    model_terms,
    posterior_terms,
    value_target_law,
    value_terms,
)
from drive_rllib.core.networks import (
    DRIVENetworks,
    DynamicsEnsemble,
    LayerParams,
    ModelStateBuffer,
    autocast_weights,
    frozen_call,
)
from drive_rllib.core.spec import PolicyUpdate, Precision, UpdateSpec
from drive_rllib.core.termination import margin_of

#: The batch key of the entropy floor's recent real states (``entropy_floor_recent_rows``).
RECENT_OBS = "recent_obs"

Normalize = Callable[[Tensor], Tensor]


def inductor_options(device: torch.device) -> dict[str, bool]:
    """inductor's options for ``torch.compile(update_terms)`` on ``device``
    (`DRIVETorchRLModule.compile`, ``benchmarks/update_step.py --compile``).

    Everywhere, the random draws are torch's own generators (``fallback_random``), so
    the compiled step draws eager's numbers. On a CPU, inductor's C++ wrapper calls the
    kernels (``cpp_wrapper``; faster there). Not on a GPU: on an H100 the C++ wrapper
    failed to build the step's backward ("CudaKernelParamCache not populated"), and its
    gain is known on a CPU only.
    """
    options = {"fallback_random": True}
    if device.type == "cpu":
        options["cpp_wrapper"] = True
    return options


ElitePairs = list[tuple[Tensor, Tensor]]


def update_terms(
    nets: DRIVENetworks, batch: dict[str, Tensor], spec: UpdateSpec, fit_model: bool = True
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """All terms of one DRIVE update step (model, Eq. 6, Eq. 5 if distilling, Eq. 4).

    Args:
        nets: the networks.
        batch: real transitions: obs [B, S], action [B, A] (in [-1, 1]), reward [B],
            next_obs [B, S], terminated [B] (float 0/1).
        spec: H, N, gamma, the policy update, the value loss, member sampling.
        fit_model: whether this step fits f_hat (``UpdateSpec.model_fit_interval``
            schedules it); if not, the model terms are ``held_model_terms`` and the
            diagnostics hold no model likelihood.

    Returns:
        (terms, diagnostics): terms for ``combine_terms`` ([B] each, the model
        terms [``model_batch_size``] when it is set; in a fixed order, float32);
        diagnostics are detached scalars under `drive_rllib.keys`.
    """
    with mixed_precision(batch["obs"].device, spec.precision):
        return _update_terms(nets, batch, spec, fit_model)


def update_loss(
    nets: DRIVENetworks,
    batch: dict[str, Tensor],
    spec: UpdateSpec,
    weights: dict[str, float],
    fit_model: bool = True,
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """One update step's loss: ``update_terms``, each term's batch mean and their
    weighted total (``combine_means`` with ``weights``, e.g. ``loss_weights``), not
    checked for finiteness (no read back to the host). What the RLModule runs, and
    compiles, so that the means and the total are part of the compiled step.

    Returns:
        (total, term means, diagnostics): the scalar loss, the unweighted mean of each
        term, and ``update_terms``' diagnostics.
    """
    terms, diagnostics = update_terms(nets, batch, spec, fit_model)
    means = {name: term.mean() for name, term in terms.items()}
    return combine_means(means, weights, check_finite=False), means, diagnostics


def mixed_precision(
    device: torch.device, precision: Precision
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` where ``precision`` resolves to
    "bfloat16" (`UpdateSpec.precision`, `resolve_precision`); nothing for "float32". The
    networks' outputs are cast back to float32 (`networks.ensemble_mlp`), so every term
    comes out float32; the backward pass runs outside it, as autocast expects."""
    if resolve_precision(precision, device) is Precision.BFLOAT16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """``precision`` with "auto" replaced: "bfloat16" where ``device`` computes bfloat16
    natively (`native_bfloat16`), else "float32"."""
    if precision is not Precision.AUTO:
        return precision
    return Precision.BFLOAT16 if native_bfloat16(device) else Precision.FLOAT32


#: ``native_bfloat16``'s answers, by device.
_NATIVE_BFLOAT16: dict[str, bool] = {}


@torch.compiler.assume_constant_result  # a fact of the machine: traced as a constant
def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` has bfloat16 arithmetic of its own: a CUDA GPU that supports it,
    a CPU with AMX-BF16 or AVX512-BF16 (elsewhere torch emulates it, slower than float32)."""
    key = str(device)
    if key not in _NATIVE_BFLOAT16:
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported()
        elif device.type == "cpu" and hasattr(torch.cpu, "get_capabilities"):
            capabilities = torch.cpu.get_capabilities()
            native = bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))
        else:
            native = False
        _NATIVE_BFLOAT16[key] = native
    return _NATIVE_BFLOAT16[key]


def _update_terms(
    nets: DRIVENetworks, batch: dict[str, Tensor], spec: UpdateSpec, fit_model: bool
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    obs = batch["obs"]
    normalize = nets.obs_normalizer.frozen(obs.dtype)
    obs_n = normalize(obs)
    if fit_model:
        terms = model_fit(
            nets.model, obs_n, batch, nets.target_affine(obs.dtype), spec.model_batch_size
        )
    else:
        terms = held_model_terms(nets.model, obs.shape[0])
    shared = imagination(nets, normalize, obs.shape[0], obs.device, spec)
    start_obs = start_states(nets, obs, spec)
    start_n = obs_n if start_obs is obs else normalize(start_obs)
    eq6 = posterior_step(nets, start_obs, start_n, shared, spec)
    terms.update(eq6.terms)
    if spec.policy_update is PolicyUpdate.DISTILL:
        terms.update(
            distill_terms(eq6.prior_mean, eq6.prior_std, eq6.posterior_mean, eq6.posterior_std)
        )
    floor_mean, floor_std = eq6.prior_mean, eq6.prior_std
    if spec.entropy_floor_recent_rows > 0:
        floor_mean, floor_std = nets.prior(normalize(recent_states(batch)))  # acts there now
    elif spec.entropy_floor_real_states and start_obs is not obs:
        floor_mean, floor_std = nets.prior(obs_n)  # where pi_theta acts
    floor_terms, prior_log_prob = entropy_floor_step(nets, floor_mean, floor_std)
    terms.update(floor_terms)
    eq4 = value_step(nets, obs_n, shared, batch, spec)
    terms.update(eq4.terms)
    return terms, update_diagnostics(nets, terms, eq6, eq4, prior_log_prob, shared, fit_model)


# --- 1. model learning --------------------------------------------------------------------------


def model_fit(
    model: DynamicsEnsemble,
    obs_n: Tensor,
    batch: dict[str, Tensor],
    target_affine: tuple[Tensor, Tensor] | None = None,
    rows: int = 0,
) -> dict[str, Tensor]:
    """Model learning: every member's NLL on its own bootstrap of the batch (``model_terms``).

    With ``target_affine`` (mean, std) the targets (s' - s, r) are standardised first.
    Each bootstrap draws ``rows`` of the batch's rows (0: as many as it has;
    ``UpdateSpec.model_batch_size``), so the terms are [rows].
    """
    obs, action = batch["obs"], batch["action"]
    batch_size = obs.shape[0]
    rows = rows or batch_size
    if rows > batch_size:
        raise ValueError(
            f"`model_batch_size` ({rows}) exceeds the batch's {batch_size} rows: "
            "lower model_batch_size or raise train_batch_size_per_learner."
        )
    boot = torch.randint(batch_size, (model.num_members, rows), device=obs.device)
    mean, log_std, term_logit = model(obs_n[boot], action[boot])
    target = torch.cat([batch["next_obs"] - obs, batch["reward"].unsqueeze(-1)], dim=-1)
    if target_affine is not None:
        target = (target - target_affine[0]) / target_affine[1]
    target = target[boot]
    return model_terms(
        mean, log_std, term_logit, target, batch["terminated"][boot], model.learn_termination
    )


#: The terms of f_hat's fit (``model_fit``; "termination" with a termination head).
MODEL_TERMS = ("model", "termination")


def held_model_terms(model: DynamicsEnsemble, batch_size: int) -> dict[str, Tensor]:
    """The model terms of a step that does not fit f_hat: zeros [B] under the same names.

    They still touch every parameter of f_hat (zero gradients), so that DDP finds
    every parameter used; the Learner drops those gradients and leaves f_hat's
    optimizer unstepped, so f_hat and its Adam state stay exactly as they were.
    """
    zero = torch.stack([p.sum() for p in model.parameters()]).sum() * 0.0
    terms = {"model": zero.expand(batch_size)}
    if model.learn_termination:
        terms["termination"] = zero.expand(batch_size)
    return terms


# --- 2. what the rollouts share -----------------------------------------------------------------


@dataclass
class Imagination:
    """The callables Eq. 6's rollouts run on, and what Eq. 4 reuses."""

    elite_params: ElitePairs  # f_hat's elites, detached: f_hat held fixed
    value_params: LayerParams  # psi's heads, detached: psi held fixed (Eq. 6)
    model_step: ModelStep
    policy: Policy | SoftPolicy  # pi_theta (soft: with log pi); fixed with policy_update="distill"
    value: ValueFn  # p_psi (the policy aggregate) with psi held fixed, for raw observations
    target_value: ValueFn  # p_psi_bar (the target aggregate), for raw observations
    raw_model_step: ModelStep  # a random elite per row, every step (Eq. 4)
    imagined_rewards: list[Tensor]  # detached rewards of every model_step call (return range)
    normalize: Normalize  # the observation normaliser, frozen for this step
    # soft returns (``entropy_in_returns``): the floor's weight, detached, else None
    entropy_weight: Tensor | None = None
    # detached bonuses -beta log pi of every action ``policy`` drew in Eq. 6 (return range)
    imagined_bonuses: list[Tensor] = field(default_factory=list)


def imagination(
    nets: DRIVENetworks,
    normalize: Normalize,
    batch_size: int,
    device: torch.device,
    spec: UpdateSpec,
) -> Imagination:
    """Eq. 6's model step, policy and value; the elite members' and psi's frozen
    parameters gathered once (and, under mixed precision, cast once)."""
    joint = spec.policy_update is PolicyUpdate.JOINT
    prior_call = (lambda *a: nets.prior(*a)) if joint else (lambda *a: frozen_call(nets.prior, *a))

    entropy_weight = soft_return_weight(nets, spec)
    imagined_bonuses: list[Tensor] = []

    def policy(o: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if entropy_weight is None:
            return tanh_gaussian_action(*prior_call(normalize(o)))
        action, log_prob = tanh_gaussian_rsample(*prior_call(normalize(o)))
        imagined_bonuses.append(-entropy_weight * log_prob.detach())
        return action, log_prob

    model = nets.model
    assignment = None
    if spec.member_per_trajectory:
        num_elites = model.elite_idx.shape[0]
        assignment = balanced_member_assignment(batch_size * spec.num_samples, num_elites, device)
    elite_params = autocast_weights(model.layer_params(model.elite_idx, frozen=True))
    value_params = autocast_weights(nets.value.layer_params(frozen=True))
    target_affine = nets.target_affine()
    rule = nets.termination_rule
    # Eq. 6 alone differentiates through the mask; Eq. 4's targets carry no gradient.
    margin = margin_of(rule) if spec.termination_gradient_width > 0 else None
    smoothing = None if margin is None else (margin, spec.termination_gradient_width)
    imagined_rewards: list[Tensor] = []

    def model_step(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        next_obs, reward, continue_prob = ensemble_step(
            model, elite_params, normalize, o, a, assignment, target_affine, rule, smoothing
        )
        imagined_rewards.append(reward.detach())
        return next_obs, reward, continue_prob

    def raw_model_step(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return ensemble_step(model, elite_params, normalize, o, a, None, target_affine, rule)

    scale = nets.value_scale()

    def frozen_value(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        heads = nets.value(normalize(o), a, scale, params=value_params)
        return aggregate_heads(*heads, spec.value_policy_aggregate.value)

    def target_value(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        how = spec.value_target_aggregate.value
        # "min2" reads two heads: draw them first and evaluate only those (the same draw).
        pair = min2_pair(nets.target_value.num_heads, o.device) if how == "min2" else None
        heads = nets.target_value(normalize(o), a, scale, heads=pair)
        return aggregate_heads(*heads, how)

    return Imagination(
        elite_params,
        value_params,
        model_step,
        policy,
        frozen_value,
        target_value,
        raw_model_step,
        imagined_rewards,
        normalize,
        entropy_weight,
        imagined_bonuses,
    )


def soft_return_weight(nets: DRIVENetworks, spec: UpdateSpec) -> Tensor | None:
    """beta of soft returns: the entropy floor's weight, detached (``entropy_in_returns``);
    None for plain returns."""
    if not spec.entropy_in_returns:
        return None
    if nets.entropy_floor is None:
        raise ValueError(
            "`entropy_in_returns` weights the entropy in imagined returns by the entropy "
            "floor's weight, and these networks have no floor: set entropy_floor=True or "
            "entropy_in_returns=False."
        )
    return nets.entropy_floor.weight.detach()


def recent_states(batch: dict[str, Tensor]) -> Tensor:
    """The batch's ``recent_obs`` [B, S]: real states from the replay's last rows (the
    entropy floor's states under ``entropy_floor_recent_rows``)."""
    if RECENT_OBS not in batch:
        raise ValueError(
            f"`entropy_floor_recent_rows` > 0 needs the batch's {RECENT_OBS!r} rows (the last "
            "rows the replay received; DRIVE's algorithm adds them): pass them, or set "
            "entropy_floor_recent_rows=0."
        )
    return batch[RECENT_OBS]


def start_states(nets: DRIVENetworks, obs: Tensor, spec: UpdateSpec) -> Tensor:
    """Eq. 6's ``posterior_batch_size`` start states (0: one per batch row): a
    ``start_state_model_fraction`` share drawn from the model-state buffer (distribution
    rollouts), the rest the batch's own real states (its first rows); all real while the
    buffer is empty."""
    buffer = nets.model_states
    num_starts = spec.posterior_batch_size or obs.shape[0]
    if num_starts > obs.shape[0]:
        raise ValueError(
            f"`posterior_batch_size` ({num_starts}) exceeds the batch's {obs.shape[0]} rows: "
            "lower posterior_batch_size or raise train_batch_size_per_learner."
        )
    num_model = round(num_starts * spec.start_state_model_fraction)
    if buffer is None or num_model == 0:
        # the batch itself when it is all of it: update_terms then reuses its normalised rows
        return obs if num_starts == obs.shape[0] else obs[:num_starts]
    # Whether the buffer holds states is a tensor, not read on the host (no graph break
    # in the compiled step): while it is empty, the rows are the batch's first real ones.
    first = model_states_or_real(buffer, obs, num_model)
    rest = torch.where(buffer.size > 0, obs[: num_starts - num_model], obs[num_model:num_starts])
    return torch.cat([first, rest])


def model_states_or_real(buffer: ModelStateBuffer | None, obs: Tensor, count: int) -> Tensor:
    """``count`` states drawn from the model-state buffer; the batch's first ``count`` real
    states while it is empty (or absent). Whether it holds states is a tensor, not read
    on the host (no graph break in the compiled step)."""
    if buffer is None:
        return obs[:count]
    return torch.where(buffer.size > 0, buffer.sample(count).to(obs), obs[:count])


def prior_sampler(nets: DRIVENetworks, normalize: Normalize, soft: bool = False) -> Policy:
    """a ~ pi_theta(s) for raw observations s: the sampler of the rollouts that build
    targets and model states (Eq. 4, distribution rollouts), run without gradient.
    ``soft``: a `SoftPolicy`, returning log pi_theta(a | s) too (soft returns)."""

    def policy(o: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if soft:
            return tanh_gaussian_rsample(*nets.prior(normalize(o)))
        return tanh_gaussian_action(*nets.prior(normalize(o)))

    return policy


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
        entropy_weight=shared.entropy_weight,
    )
    value_mu, value_sigma = aggregate_heads(
        *nets.value(obs_n, first_action, nets.value_scale(), params=shared.value_params),
        spec.value_policy_aggregate.value,
    )
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
    shared: Imagination,
    reward: Tensor,
    next_obs: Tensor,
    terminated: Tensor,
    spec: UpdateSpec,
) -> tuple[Tensor, Tensor]:
    """Eq. 4's target law for real transitions, without gradient.

    The real first step (r, s', done) is followed by H-1 imagined steps (H:
    ``UpdateSpec.eq4_horizon``, the horizon unless ``value_horizon`` sets it) under
    pi_theta and f_hat (a random elite member per step), bootstrapped with
    the target value psi_bar (``value_target_aggregate`` of its heads). With
    H = 1 this is exactly the distributional TD target N(r + gamma
    mu_bar(s', a'), gamma^2 sigma_bar(s', a')^2), a' ~ pi_theta(s'). With
    ``value_bounds`` the target means are clipped to the return range.

    Returns:
        (m, v), each [N, B].
    """

    policy = prior_sampler(nets, shared.normalize, soft=shared.entropy_weight is not None)
    next_m, next_v = imagine(
        next_obs,
        None,
        horizon=spec.eq4_horizon - 1,
        num_samples=spec.num_samples,
        gamma=spec.gamma,
        model_step=shared.raw_model_step,
        policy=policy,
        value=shared.target_value,
        entropy_weight=shared.entropy_weight,
    )
    m, v = value_target_law(reward, terminated, next_m, next_v, spec.gamma)
    if spec.value_bounds:
        m = nets.return_range.clip(m)
    return m, v


@dataclass
class ValueStep:
    """Eq. 4's terms, its target law and p_psi's heads at the replayed (s, a)."""

    terms: dict[str, Tensor]
    target_m: Tensor  # [N, B]
    target_v: Tensor  # [N, B]
    value_mu: Tensor  # [K, B]
    value_sigma: Tensor  # [K, B]


def value_step(
    nets: DRIVENetworks,
    obs_n: Tensor,
    shared: Imagination,
    batch: dict[str, Tensor],
    spec: UpdateSpec,
) -> ValueStep:
    """Eq. 4: every head of p_psi(U | s, a) at the replayed (s, a) against ``value_target``
    (``value_terms`` of all K heads at once, [N, 1, B] targets against [K, B] heads, summed
    over the K heads).

    With ``value_model_fraction`` > 0 the batch's last rows are replaced by model states
    (``model_value_rows``): (s, a ~ pi_theta) and the law of H imagined steps from there.
    """
    action = batch["action"]
    num_model = round(obs_n.shape[0] * spec.value_model_fraction)
    keep = obs_n.shape[0] - num_model
    laws = []  # (m, v) [N, rows] of the real rows, then of the model rows
    if keep:
        laws.append(
            value_target(
                nets,
                shared,
                batch["reward"][:keep],
                batch["next_obs"][:keep],
                batch["terminated"][:keep],
                spec,
            )
        )
    if num_model:
        model_obs, model_action, model_m, model_v = model_value_rows(
            nets, shared, batch["obs"], num_model, spec
        )
        obs_n = torch.cat([obs_n[:keep], shared.normalize(model_obs)])
        action = torch.cat([action[:keep], model_action])
        laws.append((model_m, model_v))
    target_m = torch.cat([m for m, _ in laws], dim=1)
    target_v = torch.cat([v for _, v in laws], dim=1)
    value_mu, value_sigma = nets.value(obs_n, action, nets.value_scale())
    per_head = value_terms(
        target_m[:, None], target_v[:, None], value_mu, value_sigma, spec.value_loss
    )
    if spec.value_head_bootstrap:
        counts = bootstrap_counts(value_mu.shape[0], value_mu.shape[1], value_mu.device)
        per_head = {name: counts * term for name, term in per_head.items()}
    terms = {name: term.sum(0) for name, term in per_head.items()}
    return ValueStep(terms, target_m, target_v, value_mu, value_sigma)


def bootstrap_counts(num_heads: int, rows: int, device: torch.device) -> Tensor:
    """[K, B] how often each of K draws of B rows with replacement picked each row
    (``value_head_bootstrap``): every head's weights sum to B."""
    draws = torch.randint(rows, (num_heads, rows), device=device)
    ones = torch.ones(num_heads, rows, device=device)
    return torch.zeros(num_heads, rows, device=device).scatter_add_(1, draws, ones)


@torch.no_grad()
def model_value_rows(
    nets: DRIVENetworks, shared: Imagination, obs: Tensor, count: int, spec: UpdateSpec
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``count`` rows of Eq. 4 at model states: s from the model-state buffer (the
    batch's first states while it is empty), a ~ pi_theta(s), and the target law of
    ``eq4_horizon`` imagined steps from (s, a) (f_hat's elites, a random one per row and step; a fall
    masks what follows), bootstrapped with psi_bar as ``value_target`` does and clipped
    to the return range with ``value_bounds``.

    Returns:
        (s [count, S], a [count, A], m [N, count], v [N, count]).
    """
    states = model_states_or_real(nets.model_states, obs, count)
    action = prior_sampler(nets, shared.normalize)(states)
    m, v = imagine(
        states,
        action,
        horizon=spec.eq4_horizon,
        num_samples=spec.num_samples,
        gamma=spec.gamma,
        model_step=shared.raw_model_step,
        policy=prior_sampler(nets, shared.normalize, soft=shared.entropy_weight is not None),
        value=shared.target_value,
        entropy_weight=shared.entropy_weight,
    )
    if spec.value_bounds:
        m = nets.return_range.clip(m)
    return states, action, m, v


# --- distribution rollouts (between update steps) ---------------------------------------------


@torch.no_grad()
def distribution_rollout_states(nets: DRIVENetworks, start_obs: Tensor, spec: UpdateSpec) -> Tensor:
    """The states of one distribution rollout from ``start_obs`` [B, S]: f_hat's elites (a
    random one per row and step) under pi_theta, ``distribution_rollout_horizon`` steps
    (``imagine.distribution_rollout``), in the update step's ``precision``. The Learner adds
    them to ``nets.model_states``."""
    with mixed_precision(start_obs.device, spec.precision):
        return _distribution_rollout_states(nets, start_obs, spec)


def _distribution_rollout_states(
    nets: DRIVENetworks, start_obs: Tensor, spec: UpdateSpec
) -> Tensor:
    normalize = nets.obs_normalizer.frozen(start_obs.dtype)
    model = nets.model
    elite_params = autocast_weights(model.layer_params(model.elite_idx, frozen=True))
    target_affine = nets.target_affine(start_obs.dtype)

    def model_step(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return ensemble_step(
            model, elite_params, normalize, o, a, None, target_affine, nets.termination_rule
        )

    return distribution_rollout(
        start_obs,
        horizon=spec.distribution_rollout_horizon,
        model_step=model_step,
        policy=prior_sampler(nets, normalize),
    )


# --- 7. diagnostics -----------------------------------------------------------------------------


def imagined_step_rewards(shared: Imagination) -> Tensor:
    """Every reward of Eq. 6's rollouts this step, detached (the return range's quantiles
    read them); with soft returns step n >= 1 carries the bonus of its action a_n (the
    rollouts' first action is q_phi's, without one)."""
    rewards = shared.imagined_rewards
    if shared.imagined_bonuses:
        rewards = rewards[:1] + [r + b for r, b in zip(rewards[1:], shared.imagined_bonuses)]
    return torch.cat(rewards)


@torch.no_grad()
def update_diagnostics(
    nets: DRIVENetworks,
    terms: dict[str, Tensor],
    eq6: PosteriorStep,
    eq4: ValueStep,
    prior_log_prob: Tensor,
    shared: Imagination,
    fit_model: bool = True,
) -> dict[str, Tensor]:
    """Detached batch means of one update step, under `drive_rllib.keys` (terms excluded:
    the Learner logs those itself); the model's likelihoods only on a step that fits it."""
    num_members = nets.model.num_members
    rewards = imagined_step_rewards(shared)
    reward_low, reward_high = torch.quantile(
        rewards, torch.tensor([0.01, 0.99], dtype=rewards.dtype, device=rewards.device)
    )
    diagnostics = {
        keys.VALUE_CROSS_ENTROPY: gaussian_cross_entropy(
            eq4.target_m.unsqueeze(1), eq4.target_v.unsqueeze(1), eq4.value_mu, eq4.value_sigma
        ).mean(),
        keys.VALUE_MU: eq4.value_mu.mean(),
        keys.VALUE_SIGMA: eq4.value_sigma.mean(),
        keys.VALUE_TARGET_MEAN: eq4.target_m.mean(),
        keys.VALUE_TARGET_STD: eq4.target_v.mean().sqrt(),
        keys.POLICY_ENTROPY: -prior_log_prob.mean(),
        keys.POLICY_STD: eq6.prior_std.mean(),
        keys.POSTERIOR_STD: eq6.posterior_std.mean(),
        keys.VALUE_HEAD_SPREAD: eq4.value_mu.std(0).mean()
        if eq4.value_mu.shape[0] > 1
        else torch.zeros(()),
        keys.IMAGINED_REWARD_LOW: reward_low,
        keys.IMAGINED_REWARD_HIGH: reward_high,
        keys.POLICY_SATURATION: (torch.tanh(eq6.prior_mean).abs() > 0.99).float().mean(),
    }
    if fit_model:
        diagnostics[keys.MODEL_NLL_PER_MEMBER] = terms["model"].mean() / num_members
        if "termination" in terms:
            diagnostics[keys.MODEL_TERMINATION_PER_MEMBER] = (
                terms["termination"].mean() / num_members
            )
    if nets.entropy_floor is not None:
        diagnostics[keys.ENTROPY_FLOOR_WEIGHT] = nets.entropy_floor.weight.detach()
    return diagnostics
