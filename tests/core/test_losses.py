"""Eq. 4, 5, 6 and the model loss: hand-worked values, limit cases, the summing rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from drive_rllib.core import (
    NetworkSpec,
    UpdateSpec,
    combine_terms,
    distill_terms,
    entropy_floor_terms,
    loss_weights,
    model_terms,
    posterior_terms,
    update_loss,
    update_terms,
    value_terms,
)
from tests.core.helpers import random_batch, t, tiny_nets


def test_model_nll_by_hand_and_against_torch():
    # one member, one row, target (1, 2), mean (0, 0), std (1, 2):
    # 0.5 * 1 + 0 + 0.5 log 2pi + 0.5 * 1 + log 2 + 0.5 log 2pi = 1 + log 2 + log 2pi = 3.531024
    target = t(1.0, 2.0).view(1, 1, 2)
    mean = torch.zeros(1, 1, 2, dtype=torch.float64)
    log_std = t(0.0, math.log(2.0)).view(1, 1, 2)
    terms = model_terms(mean, log_std, t(0.0).view(1, 1), target, t(1.0).view(1, 1))
    assert terms["model"].item() == pytest.approx(3.531024, abs=1e-6)
    expected = -Normal(mean, log_std.exp()).log_prob(target).sum()
    assert terms["model"].item() == pytest.approx(expected.item())
    # logit 0 -> P(terminated) = 1/2 -> cross-entropy log 2
    assert terms["termination"].item() == pytest.approx(math.log(2.0))


def test_model_terms_sum_over_members():
    mean, log_std = torch.zeros(3, 4, 2), torch.zeros(3, 4, 2)
    target = torch.randn(3, 4, 2)
    terms = model_terms(
        mean, log_std, torch.zeros(3, 4), target, torch.zeros(3, 4), learn_termination=False
    )
    assert set(terms) == {"model"} and terms["model"].shape == (4,)
    per_member = -Normal(0.0, 1.0).log_prob(target).sum(-1)  # [3, 4]
    torch.testing.assert_close(terms["model"], per_member.sum(0))


def test_eq6_terms_by_hand():
    # N = 1, m = 2, v = 0 (a terminated trajectory) floored to sigma_min^2 = 0.01:
    # KL(N(2, 0.1^2) || N(1, 0.5^2)) = log(0.5 / 0.1) + (0.01 + 1) / (2 * 0.25) - 0.5 = 3.129438
    # KL(q || pi) per action dim: KL(N(0, 1) || N(1, 2^2)) = 0.443147, two dims
    terms = posterior_terms(
        m=t(2.0).view(1, 1),
        v=t(0.0).view(1, 1),
        value_mu=t(1.0),
        value_sigma=t(0.5),
        posterior_mean=t(0.0, 0.0).view(1, 2),
        posterior_std=t(1.0, 1.0).view(1, 2),
        prior_mean=t(1.0, 1.0).view(1, 2),
        prior_std=t(2.0, 2.0).view(1, 2),
        sigma_min=0.1,
    )
    assert terms["return"].item() == pytest.approx(2.0)
    assert terms["kl_value"].item() == pytest.approx(3.129438, abs=1e-6)
    assert terms["kl_prior"].item() == pytest.approx(2 * 0.443147, abs=1e-6)


def test_eq6_n_greater_than_one_uses_the_moment_matched_law():
    # components N(1, 1), N(3, 2) -> N(2, 2.5); KL(N(2, 2.5) || N(0, 1))
    # = log(1 / sqrt 2.5) + (2.5 + 4) / 2 - 0.5 = -0.458145 + 3.25 - 0.5 = 2.291855
    terms = posterior_terms(
        m=t(1.0, 3.0).view(2, 1),
        v=t(1.0, 2.0).view(2, 1),
        value_mu=t(0.0),
        value_sigma=t(1.0),
        posterior_mean=torch.zeros(1, 1),
        posterior_std=torch.ones(1, 1),
        prior_mean=torch.zeros(1, 1),
        prior_std=torch.ones(1, 1),
        sigma_min=0.1,
    )
    assert terms["return"].item() == pytest.approx(2.0)
    assert terms["kl_value"].item() == pytest.approx(2.291855, abs=1e-6)
    assert terms["kl_prior"].item() == pytest.approx(0.0)


def test_eq5_by_hand():
    # KL(pi || q) = KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2 = 1.306853
    terms = distill_terms(
        t(1.0).view(1, 1), t(2.0).view(1, 1), t(0.0).view(1, 1), t(1.0).view(1, 1)
    )
    assert terms["distill"].item() == pytest.approx(1.306853, abs=1e-6)


def test_eq4_cross_entropy_is_the_per_component_closed_form_averaged():
    # components N(1, 0.5) and N(3, 0) against p_psi = N(0, 2^2):
    # CE_1 = log 2 + 0.5 log 2pi + (1 + 0.5) / 8 = 1.799586
    # CE_2 = log 2 + 0.5 log 2pi + 9 / 8          = 2.737086; mean 2.268336
    terms = value_terms(
        t(1.0, 3.0).view(2, 1), t(0.5, 0.0).view(2, 1), t(0.0), t(2.0), value_loss="cross_entropy"
    )
    assert terms["value"].item() == pytest.approx(2.268336, abs=1e-6)


@pytest.mark.parametrize("value_loss", ["cross_entropy", "split"])
def test_eq4_minimiser_is_the_target_laws_mean_and_variance(value_loss):
    # targets N(1, 1), N(3, 2): the minimiser is mu = 2, sigma^2 = 1.5 + 1 = 2.5, for both forms
    m, v = t(1.0, 3.0).view(2, 1), t(1.0, 2.0).view(2, 1)
    mu = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(3000):
        terms = value_terms(m, v, mu, log_sigma.exp(), value_loss)
        loss = sum(term.mean() for term in terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mu.item() == pytest.approx(2.0, abs=1e-3)
    assert log_sigma.exp().item() ** 2 == pytest.approx(2.5, abs=1e-3)


@pytest.mark.parametrize("value_loss", ["cross_entropy", "split"])
def test_eq4_terms_of_k_heads_at_once_are_each_heads_own(value_loss):
    # value_step scores K heads in one call: [N, 1, B] targets against [K, B] heads gives
    # row k = head k's terms against the [N, B] targets, values and gradients alike
    generator = torch.Generator().manual_seed(0)
    m, v = torch.randn(3, 4, generator=generator), torch.rand(3, 4, generator=generator)
    mu = torch.randn(2, 4, generator=generator, requires_grad=True)
    sigma = (torch.rand(2, 4, generator=generator) + 0.5).requires_grad_()
    joint = value_terms(m[:, None], v[:, None], mu, sigma, value_loss)
    joint_grads = torch.autograd.grad(sum(term.sum() for term in joint.values()), (mu, sigma))
    for k in range(2):
        own = value_terms(m, v, mu[k], sigma[k], value_loss)
        assert own.keys() == joint.keys()
        for name in own:
            torch.testing.assert_close(joint[name][k], own[name], rtol=0, atol=0)
        own_grads = torch.autograd.grad(sum(term.sum() for term in own.values()), (mu, sigma))
        for joint_grad, own_grad in zip(joint_grads, own_grads):
            torch.testing.assert_close(joint_grad[k], own_grad[k], rtol=0, atol=0)


def test_split_value_loss_moves_the_mean_at_unit_rate_whatever_sigma():
    # plain cross-entropy divides the mean's gradient by sigma^2; the split form does not
    mu = torch.zeros(1, requires_grad=True)
    sigma = torch.tensor([10.0])
    m, v = torch.full((1, 1), 4.0), torch.zeros(1, 1)
    value_terms(m, v, mu, sigma, "split")["value_mean"].sum().backward()
    assert mu.grad.item() == pytest.approx(-4.0)
    mu.grad = None
    value_terms(m, v, mu, sigma, "cross_entropy")["value"].sum().backward()
    assert mu.grad.item() == pytest.approx(-4.0 / 100.0)


def test_entropy_floor_terms_by_hand():
    log_prob = torch.tensor([-1.0, -3.0], requires_grad=True)
    log_weight = torch.tensor(math.log(2.0), requires_grad=True)
    terms = entropy_floor_terms(log_prob, log_weight.exp(), log_weight, torch.tensor(2.0))
    torch.testing.assert_close(terms["entropy"], torch.tensor([-2.0, -6.0]), check_dtype=False)
    # -log 2 * (log_prob + target) = -0.693147 * (-1 + 2, -3 + 2)
    torch.testing.assert_close(
        terms["entropy_weight"].detach(), torch.tensor([-1.0, 1.0]) * math.log(2.0)
    )
    terms["entropy_weight"].sum().backward()
    # mean entropy -mean(log_prob) = 2 equals the target: the weight's gradient is zero
    assert log_weight.grad.item() == pytest.approx(0.0, abs=1e-6)
    assert log_prob.grad is None
    # entropy 2 above a target of 0: the weight's gradient is positive (the weight shrinks)
    log_weight.grad = None
    entropy_floor_terms(log_prob, log_weight.exp(), log_weight, torch.tensor(0.0))[
        "entropy_weight"
    ].sum().backward()
    assert log_weight.grad.item() == pytest.approx(4.0)


def test_combine_terms_checks_names_and_finiteness():
    terms = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([2.0])}
    assert combine_terms(terms, {"a": 0.5, "b": -1.0}).item() == pytest.approx(0.5 * 2.0 - 2.0)
    with pytest.raises(KeyError, match=r"terms without weight \['b'\]"):
        combine_terms(terms, {"a": 1.0})
    with pytest.raises(KeyError, match=r"weights without term \['c'\]"):
        combine_terms(terms, {"a": 1.0, "b": 1.0, "c": 1.0})
    with pytest.raises(FloatingPointError, match=r"non-finite DRIVE loss terms \['b'\]"):
        combine_terms({"a": torch.ones(1), "b": torch.tensor([float("nan")])}, {"a": 1, "b": 1})


@pytest.mark.parametrize("policy_update", ["joint", "distill"])
@pytest.mark.parametrize("value_loss", ["split", "cross_entropy"])
@pytest.mark.parametrize("entropy_floor", [True, False])
def test_weights_name_exactly_the_terms_of_an_update(policy_update, value_loss, entropy_floor):
    nets = tiny_nets(entropy_floor=entropy_floor)
    spec = UpdateSpec(
        horizon=2,
        num_samples=1,
        gamma=0.9,
        alpha=2.0,
        policy_update=policy_update,
        value_loss=value_loss,
    )
    terms, _ = update_terms(nets, random_batch(), spec)
    weights = loss_weights(spec, NetworkSpec(entropy_floor=entropy_floor))
    assert set(terms) == set(weights)
    assert weights["return"] == -0.5  # -J_U / alpha
    assert torch.isfinite(combine_terms(terms, weights))


def test_update_loss_is_the_weighted_sum_of_its_term_means_and_does_not_check_them():
    nets = tiny_nets()
    spec = UpdateSpec(horizon=2, num_samples=1, gamma=0.9)
    batch = random_batch(16)
    torch.manual_seed(1)
    terms, diagnostics = update_terms(nets, batch, spec)
    weights = {name: 0.5 + i for i, name in enumerate(terms)}  # distinct, so order matters
    torch.manual_seed(1)
    total, means, loss_diagnostics = update_loss(nets, batch, spec, weights)
    assert list(means) == list(terms) and list(loss_diagnostics) == list(diagnostics)
    for name in terms:
        torch.testing.assert_close(means[name], terms[name].mean())
    by_hand = sum(weights[name] * terms[name].mean().item() for name in terms)
    assert total.item() == pytest.approx(by_hand, rel=1e-5)
    torch.testing.assert_close(total, combine_terms(terms, weights))
    assert total.requires_grad
    # A NaN reward makes Eq. 4's terms NaN: the total comes back NaN, nothing raises
    # (the Learner finds it with the gradients and skips the step).
    batch["reward"][3] = float("nan")
    total, means, _ = update_loss(nets, batch, spec, weights)
    assert torch.isnan(total)
    assert any(torch.isnan(mean) for mean in means.values())
    with pytest.raises(KeyError, match="weights without term"):
        update_loss(nets, batch, spec, {**weights, "extra": 1.0})
