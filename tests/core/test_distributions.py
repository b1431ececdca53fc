"""Closed forms of the Gaussians: values worked by hand, torch.distributions, Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution, kl_divergence
from torch.distributions.transforms import TanhTransform

from drive_rllib.core import (
    diag_gaussian_kl,
    gaussian_cross_entropy,
    gaussian_kl,
    moment_match,
    tanh_gaussian_log_prob,
    tanh_gaussian_rsample,
)
from drive_rllib.core.distributions import tanh_gaussian_action
from tests.core.helpers import t


def test_gaussian_kl_by_hand():
    # KL(N(0, 1) || N(1, 2^2)) = log 2 + (1 + 1) / (2 * 4) - 1/2 = 0.693147 + 0.25 - 0.5
    assert gaussian_kl(t(0.0), t(1.0), t(1.0), t(2.0)).item() == pytest.approx(0.443147, abs=1e-6)
    # KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2 = 1.306853
    assert gaussian_kl(t(1.0), t(2.0), t(0.0), t(1.0)).item() == pytest.approx(1.306853, abs=1e-6)
    # identical Gaussians: 0
    assert gaussian_kl(t(3.0), t(0.5), t(3.0), t(0.5)).item() == pytest.approx(0.0, abs=1e-12)


def test_diag_gaussian_kl_matches_torch_distributions():
    mean_p, mean_q = torch.randn(5, 4), torch.randn(5, 4)
    std_p, std_q = torch.rand(5, 4) + 0.1, torch.rand(5, 4) + 0.1
    expected = kl_divergence(Normal(mean_p, std_p), Normal(mean_q, std_q)).sum(-1)
    torch.testing.assert_close(diag_gaussian_kl(mean_p, std_p, mean_q, std_q), expected)


def test_gaussian_cross_entropy_by_hand_and_monte_carlo():
    # E_{N(1, 0.5)}[-log N(U; 0, 2^2)] = log 2 + 0.5 log 2 pi + (1 + 0.5) / 8
    #                                  = 0.693147 + 0.918939 + 0.1875 = 1.799586
    value = gaussian_cross_entropy(t(1.0), t(0.5), t(0.0), t(2.0)).item()
    assert value == pytest.approx(1.799586, abs=1e-6)
    u = 1.0 + math.sqrt(0.5) * torch.randn(400_000, dtype=torch.float64)
    monte_carlo = -Normal(t(0.0), t(2.0)).log_prob(u).mean().item()
    assert monte_carlo == pytest.approx(value, abs=5e-3)
    # a point target (v = 0) is the negative log density at m
    point = gaussian_cross_entropy(t(1.0), t(0.0), t(0.0), t(2.0))
    torch.testing.assert_close(point, -Normal(t(0.0), t(2.0)).log_prob(t(1.0)))


def test_moment_match_by_hand_and_against_numpy():
    # components N(1, 1), N(3, 2): mean 2, variance (1 + 2) / 2 + var([1, 3]) = 1.5 + 1 = 2.5
    mean, variance = moment_match(t(1.0, 3.0).unsqueeze(-1), t(1.0, 2.0).unsqueeze(-1))
    assert mean.item() == pytest.approx(2.0)
    assert variance.item() == pytest.approx(2.5)
    rng = np.random.default_rng(0)
    m, v = rng.normal(size=(4, 7)), rng.uniform(0.1, 2.0, size=(4, 7))
    mean, variance = moment_match(torch.from_numpy(m), torch.from_numpy(v))
    np.testing.assert_allclose(mean.numpy(), m.mean(0))
    np.testing.assert_allclose(variance.numpy(), v.mean(0) + m.var(0))
    # the mixture's variance by sampling agrees
    component = rng.integers(0, 4, size=400_000)
    samples = rng.normal(m[component, 0], np.sqrt(v[component, 0]))
    assert samples.var() == pytest.approx(variance[0].item(), rel=2e-2)


def test_single_component_mixture_is_that_gaussian():
    m, v = torch.randn(1, 6), torch.rand(1, 6)
    mean, variance = moment_match(m, v)
    torch.testing.assert_close(mean, m[0])
    torch.testing.assert_close(variance, v[0])


def test_tanh_log_prob_matches_torch_transformed_distribution():
    mean, std = torch.randn(6, 3, dtype=torch.float64), torch.rand(6, 3, dtype=torch.float64) + 0.2
    pre_tanh = torch.randn(6, 3, dtype=torch.float64)
    squashed = TransformedDistribution(Normal(mean, std), [TanhTransform()])
    expected = squashed.log_prob(torch.tanh(pre_tanh)).sum(-1)
    torch.testing.assert_close(tanh_gaussian_log_prob(pre_tanh, mean, std), expected)
    # stable far in the tails where 1 - tanh(u)^2 underflows
    far = torch.full((1, 3), 30.0, dtype=torch.float64)
    assert torch.isfinite(tanh_gaussian_log_prob(far, mean[:1], std[:1])).all()


def test_rsample_is_reparameterised_and_in_bounds():
    mean = torch.zeros(1000, 2, requires_grad=True)
    std = torch.ones(1000, 2)
    action, log_prob = tanh_gaussian_rsample(mean, std)
    assert action.abs().max() < 1.0 and log_prob.shape == (1000,)
    action.sum().backward()
    assert mean.grad is not None and mean.grad.abs().sum() > 0
    assert tanh_gaussian_action(mean, std).shape == (1000, 2)


def test_kl_of_squashed_gaussians_equals_pre_squash_closed_form():
    # KL is invariant under the shared tanh bijection: a Monte Carlo estimate
    # of E_q[log q(a) - log p(a)] over squashed samples equals the closed form.
    q_mean, q_std = t(0.3, -0.5), t(0.6, 0.4)
    p_mean, p_std = t(-0.2, 0.1), t(0.9, 0.7)
    pre_tanh = q_mean + q_std * torch.randn(400_000, 2, dtype=torch.float64)
    log_q = tanh_gaussian_log_prob(pre_tanh, q_mean, q_std)
    # log p at the same actions a = tanh(u): p's own pre-image of a is u
    log_p = tanh_gaussian_log_prob(pre_tanh, p_mean, p_std)
    closed_form = diag_gaussian_kl(q_mean, q_std, p_mean, p_std).item()
    assert (log_q - log_p).mean().item() == pytest.approx(closed_form, abs=1e-2)
