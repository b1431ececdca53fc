"""An upper bound on what merging Eq. 4's target rollout into Eq. 6's rollout would cost
(the compiled bfloat16 core step, the issue's sizes, one thread, one process, 7
interleaved rounds of 10 steps). Three steps:

- ``full``: the project's step (Eq. 6's rollout of B rows, then Eq. 4's target: the real
  step and H-1 imagined steps of B rows from s', with psi_bar's two heads);
- ``short``: Eq. 4's target cut to H 1 (no imagined steps), the lower bound;
- ``merged``: Eq. 6's rollout run on 2B rows, the batch's start states and s' (with
  a' ~ pi_theta, no gradient), and Eq. 4's target at H 1 besides. Every merged model and
  policy call holds both halves, as a merge would; it does more than a merge needs (H
  steps instead of H-1 for the s' rows, psi's five heads instead of psi_bar's two, the
  backward through the s' rows, and the H-1 target's own policy and value call), so it is
  an upper bound on a merged step's cost. Its terms are not the method's: cost only.

    OMP_NUM_THREADS=1 python merged_rollout_ceiling.py > merged_rollout_ceiling.txt
"""

import dataclasses

import torch
from interleaved import compare, core_step

from drive_rllib.core import update
from drive_rllib.core.distributions import tanh_gaussian_rsample
from drive_rllib.core.imagine import imagine
from drive_rllib.core.losses import posterior_terms
from drive_rllib.core.spec import PolicyUpdate

full_terms = update._update_terms
full_target = update.value_target


def short_target(nets, shared, reward, next_obs, terminated, spec):
    return full_target(
        nets, shared, reward, next_obs, terminated, dataclasses.replace(spec, horizon=1)
    )


def merged_terms(nets, batch, spec, fit_model):
    joint = spec.policy_update is PolicyUpdate.JOINT
    obs = batch["obs"]
    rows = obs.shape[0]
    normalize = nets.obs_normalizer.frozen(obs.dtype)
    obs_n = normalize(obs)
    terms = update.model_fit(nets.model, obs_n, batch, nets.target_affine(obs.dtype))
    shared = update.imagination(nets, normalize, 2 * rows, obs.device, spec)
    posterior_mean, posterior_std = nets.posterior(obs_n)
    first_action, _ = tanh_gaussian_rsample(posterior_mean, posterior_std)
    prior_mean, prior_std = nets.prior(obs_n)
    with torch.no_grad():
        next_action = shared.policy(batch["next_obs"])
    m, v = imagine(
        torch.cat([obs, batch["next_obs"]]),
        torch.cat([first_action, next_action]),
        horizon=spec.horizon,
        num_samples=spec.num_samples,
        gamma=spec.gamma,
        model_step=shared.model_step,
        policy=shared.policy,
        value=shared.value,
    )
    value_mu, value_sigma = update.aggregate_heads(
        *nets.value(obs_n, first_action, nets.value_scale(), params=shared.value_params),
        spec.value_policy_aggregate.value,
    )
    terms.update(
        posterior_terms(
            m[:, :rows],
            v[:, :rows],
            value_mu,
            value_sigma,
            posterior_mean,
            posterior_std,
            prior_mean if joint else prior_mean.detach(),
            prior_std if joint else prior_std.detach(),
            nets.sigma_min,
        )
    )
    if not joint:
        terms.update(update.distill_terms(prior_mean, prior_std, posterior_mean, posterior_std))
    floor_terms, _ = update.entropy_floor_step(nets, prior_mean, prior_std)
    terms.update(floor_terms)
    eq4 = update.value_step(nets, obs_n, shared, batch, spec)
    terms.update(eq4.terms)
    return terms, {"m_s_prime": m[:, rows:].detach().mean()}


variants = {
    "full": (full_terms, full_target),
    "short": (full_terms, short_target),
    "merged": (merged_terms, short_target),
}


def use(name):
    update._update_terms, update.value_target = variants[name]


steps = {name: core_step(compiled=True) for name in variants}
compare(steps, use, baseline="full")
