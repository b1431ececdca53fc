"""Gradient routing: each loss reaches only its own parameters, so ONE backward is correct."""

from __future__ import annotations

import pytest
import torch

from drive_rllib.core import (
    NetworkSpec,
    UpdateSpec,
    combine_terms,
    frozen_call,
    loss_weights,
    posterior_terms,
    update_terms,
)
from drive_rllib.core.distributions import aggregate_heads, tanh_gaussian_rsample
from tests.core.helpers import random_batch, small_spec, tiny_nets

GROUPS = ("model", "posterior", "prior", "value", "entropy_floor")
TERM_GROUPS = {
    "model": ("model", "termination"),
    "eq6": ("return", "kl_prior", "kl_value"),
    "eq5": ("distill",),
    "eq4": ("value_mean", "value_sigma"),
    "entropy": ("entropy",),
    "entropy_weight": ("entropy_weight",),
}


def groups_reached(policy_update: str, which: str, precision: str = "float32") -> set[str]:
    """Backward only the terms in TERM_GROUPS[which]; return the parameter groups with gradient."""
    torch.manual_seed(0)
    nets = tiny_nets()
    spec = small_spec(policy_update=policy_update, precision=precision)
    terms, _ = update_terms(nets, random_batch(16), spec)
    weights = loss_weights(spec, NetworkSpec())
    loss = sum(weights[name] * terms[name].mean() for name in TERM_GROUPS[which])
    loss.backward()
    reached = {
        group
        for group, params in nets.parameter_groups().items()
        if any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    }
    assert all(p.grad is None for p in nets.target_value.parameters())
    return reached


@pytest.mark.parametrize(
    "policy_update, which, expected",
    [
        ("joint", "model", {"model"}),
        ("joint", "eq6", {"posterior", "prior"}),
        ("joint", "eq4", {"value"}),
        ("joint", "entropy", {"prior"}),
        ("joint", "entropy_weight", {"entropy_floor"}),
        ("distill", "model", {"model"}),
        ("distill", "eq6", {"posterior"}),
        ("distill", "eq5", {"prior"}),
        ("distill", "eq4", {"value"}),
        ("distill", "entropy", {"prior"}),
    ],
)
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_each_loss_reaches_only_its_parameters(policy_update, which, expected, precision):
    assert groups_reached(policy_update, which, precision) == expected


def test_one_backward_of_the_sum_equals_the_per_group_gradients():
    """The gradient each group gets from the combined loss equals the one from its own terms."""

    def grads(names: tuple[str, ...] | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        nets = tiny_nets()
        spec = UpdateSpec(horizon=2, num_samples=1, gamma=0.9, alpha=1.0)
        terms, _ = update_terms(nets, random_batch(16), spec)
        weights = loss_weights(spec, NetworkSpec())
        if names is None:
            loss = combine_terms(terms, weights)
        else:
            loss = sum(weights[name] * terms[name].mean() for name in names)
        loss.backward()
        return {n: p.grad.clone() for n, p in nets.named_parameters() if p.grad is not None}

    total = grads(None)
    own = {
        "model.": grads(TERM_GROUPS["model"]),
        "posterior.": grads(TERM_GROUPS["eq6"]),
        "value.": grads(TERM_GROUPS["eq4"]),
        "entropy_floor.": grads(TERM_GROUPS["entropy_weight"]),
    }
    for prefix, group_grads in own.items():
        for name, grad in group_grads.items():
            if name.startswith(prefix):
                torch.testing.assert_close(total[name], grad)


@pytest.mark.parametrize("frozen", ["frozen_call", "layer_params"])
def test_eq6_reaches_posterior_through_the_value_at_a_t_but_never_psi(frozen):
    """J_KL2 evaluates p_psi(U | s, a_t) with psi fixed, keeping the path through a_t
    (``update_terms`` passes psi's detached ``layer_params``; ``frozen_call`` is the
    general form)."""
    # An unscaled value: a scaled one starts with a zero last layer, flat in a_t.
    nets = tiny_nets(value_scaled=False)
    obs_n = torch.randn(8, 3)
    mean, std = nets.posterior(obs_n)
    action, _ = tanh_gaussian_rsample(mean, std)
    if frozen == "frozen_call":
        heads = frozen_call(nets.value, obs_n, action)
    else:
        heads = nets.value(obs_n, action, params=nets.value.layer_params(frozen=True))
    mu, sigma = aggregate_heads(*heads, "mean")
    terms = posterior_terms(
        torch.zeros(1, 8),
        torch.ones(1, 8),
        mu,
        sigma,
        mean,
        std,
        mean.detach(),
        std.detach(),
        sigma_min=0.1,
    )
    terms["kl_value"].sum().backward()
    assert all(p.grad is None for p in nets.value.parameters())
    assert sum(p.grad.abs().sum() for p in nets.posterior.parameters()) > 0
