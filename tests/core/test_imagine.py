"""Imagined rollouts: closed forms on toy dynamics, termination, member assignment, shapes."""

from __future__ import annotations

import pytest
import torch

from drive_rllib.core import (
    UpdateSpec,
    balanced_member_assignment,
    ensemble_step,
    imagine,
    update_terms,
    value_target,
    value_target_law,
)
from drive_rllib.core.distributions import tanh_gaussian_action, tanh_gaussian_rsample
from drive_rllib.core.update import imagination
from tests.core.helpers import random_batch, tiny_nets

GAMMA = 0.9


def toy_step(continue_prob: float = 1.0):
    """s' = s + a, r = s, continue with the given probability (S = A = 1)."""

    def step(obs, action):
        return obs + action, obs[:, 0], torch.full_like(obs[:, 0], continue_prob)

    return step


def constant_policy(obs):
    return torch.full_like(obs, 0.5)


def value_equals_state(obs, action):
    return obs[:, 0], torch.ones_like(obs[:, 0])


def run_toy(horizon, continue_prob=1.0, num_samples=1):
    return imagine(
        torch.tensor([[1.0]]),
        torch.tensor([[0.5]]),
        horizon=horizon,
        num_samples=num_samples,
        gamma=GAMMA,
        model_step=toy_step(continue_prob),
        policy=constant_policy,
        value=value_equals_state,
    )


def test_two_steps_by_hand():
    # s0 = 1, a0 = 0.5: r0 = 1, s1 = 1.5; a1 = 0.5: r1 = 1.5, s2 = 2; bootstrap mu(s2) = 2, sigma 1.
    # m = 1 + 0.9 * 1.5 + 0.81 * 2 = 3.97; v = (0.81 * 1)^2 = 0.6561
    m, v = run_toy(horizon=2)
    assert m.item() == pytest.approx(3.97)
    assert v.item() == pytest.approx(0.6561)


def test_termination_zeroes_everything_after_it():
    # c = 0: only r0 counts, and the bootstrap has no weight (variance 0).
    m, v = run_toy(horizon=3, continue_prob=0.0)
    assert m.item() == pytest.approx(1.0)
    assert v.item() == 0.0
    # c = 0.5: w1 = 0.9 * 0.5, w2 = 0.81 * 0.25; m = 1 + 0.45 * 1.5 + 0.2025 * 2 = 2.08
    m, v = run_toy(horizon=2, continue_prob=0.5)
    assert m.item() == pytest.approx(1.0 + 0.45 * 1.5 + 0.2025 * 2.0)
    assert v.item() == pytest.approx(0.2025**2)


def test_horizon_zero_bootstraps_at_the_start():
    m, v = run_toy(horizon=0)
    assert m.item() == pytest.approx(1.0) and v.item() == pytest.approx(1.0)


def test_value_target_law_with_h1_is_the_distributional_td_target():
    reward, terminated = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    next_mu, next_var = torch.tensor([[5.0, 7.0]]), torch.tensor([[4.0, 9.0]])
    m, v = value_target_law(reward, terminated, next_mu, next_var, GAMMA)
    # N(r + gamma mu', gamma^2 sigma'^2) when not terminated; N(r, 0) when terminated
    torch.testing.assert_close(m, torch.tensor([[1.0 + 0.9 * 5.0, 2.0]]))
    torch.testing.assert_close(v, torch.tensor([[0.81 * 4.0, 0.0]]))


def test_value_target_with_networks_h1_uses_target_value_at_policy_action():
    # One unscaled head: the target aggregate is that head, and no return range applies.
    nets = tiny_nets(value_heads=1, value_scaled=False)
    spec = UpdateSpec(horizon=1, num_samples=1, gamma=GAMMA, value_bounds=False)
    batch = random_batch(6, terminated=torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    # make psi_bar differ from psi so that using the wrong one would show
    with torch.no_grad():
        for p in nets.target_value.parameters():
            p.add_(0.3)
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, 6, torch.device("cpu"), spec)
    torch.manual_seed(7)
    m, v = value_target(nets, shared, batch["reward"], batch["next_obs"], batch["terminated"], spec)
    torch.manual_seed(7)
    with torch.no_grad():
        next_action = tanh_gaussian_action(*nets.prior(normalize(batch["next_obs"])))
        mu, sigma = (x[0] for x in nets.target_value(normalize(batch["next_obs"]), next_action))
    alive = 1.0 - batch["terminated"]
    torch.testing.assert_close(m[0], batch["reward"] + GAMMA * alive * mu)
    torch.testing.assert_close(v[0], GAMMA**2 * alive * sigma**2)


def soft_constant_policy(obs):
    """a = 0.5 with log pi(a | s) = -2 (soft returns)."""
    return torch.full_like(obs, 0.5), torch.full_like(obs[:, 0], -2.0)


def run_soft_toy(horizon, first_action, continue_prob=1.0, beta=0.5):
    return imagine(
        torch.tensor([[1.0]]),
        first_action,
        horizon=horizon,
        num_samples=1,
        gamma=GAMMA,
        model_step=toy_step(continue_prob),
        policy=soft_constant_policy,
        value=value_equals_state,
        entropy_weight=torch.tensor(beta),
    )


def test_soft_returns_by_hand():
    # Every action the policy draws adds -beta log pi = 0.5 * 2 = 1 to its step's reward.
    # Given a0 (no bonus): m = 1 + 0.9 (1.5 + 1) + 0.81 (mu(s2) = 2, + 1) = 5.68 (plain: 3.97).
    m, v = run_soft_toy(horizon=2, first_action=torch.tensor([[0.5]]))
    assert m.item() == pytest.approx(1.0 + 0.9 * 2.5 + 0.81 * 3.0)
    assert v.item() == pytest.approx(0.6561)  # the bonus moves the mean only
    # a0 drawn by the policy: its bonus counts at step 0 too.
    m, _ = run_soft_toy(horizon=2, first_action=None)
    assert m.item() == pytest.approx(2.0 + 0.9 * 2.5 + 0.81 * 3.0)
    # H = 0 with a drawn action: mu(s0) + bonus = 1 + 1.
    m, _ = run_soft_toy(horizon=0, first_action=None)
    assert m.item() == pytest.approx(2.0)


def test_soft_returns_mask_the_bonus_after_a_fall():
    # c = 0 after the first step: no later reward, bonus or bootstrap; a drawn a0 keeps its own.
    m, _ = run_soft_toy(horizon=3, first_action=torch.tensor([[0.5]]), continue_prob=0.0)
    assert m.item() == pytest.approx(1.0)
    m, _ = run_soft_toy(horizon=3, first_action=None, continue_prob=0.0)
    assert m.item() == pytest.approx(2.0)
    # beta = 0 is the plain return.
    m, _ = run_soft_toy(horizon=2, first_action=torch.tensor([[0.5]]), beta=0.0)
    assert m.item() == pytest.approx(3.97)


def test_soft_value_target_with_h1_adds_the_bonus_of_the_next_action():
    # N(r + gamma (mu_bar(s', a') - beta log pi(a' | s')), ...) with beta the floor's weight.
    nets = tiny_nets(value_heads=1, value_scaled=False, initial_entropy_weight=0.3)
    spec = UpdateSpec(horizon=1, gamma=GAMMA, value_bounds=False, entropy_in_returns=True)
    batch = random_batch(6, terminated=torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, 6, torch.device("cpu"), spec)
    torch.manual_seed(7)
    m, _ = value_target(nets, shared, batch["reward"], batch["next_obs"], batch["terminated"], spec)
    torch.manual_seed(7)
    with torch.no_grad():
        next_action, log_prob = tanh_gaussian_rsample(*nets.prior(normalize(batch["next_obs"])))
        mu, _ = (x[0] for x in nets.target_value(normalize(batch["next_obs"]), next_action))
    alive = 1.0 - batch["terminated"]
    torch.testing.assert_close(m[0], batch["reward"] + GAMMA * alive * (mu - 0.3 * log_prob))


def test_balanced_member_assignment_is_uniform_over_members():
    order, inverse = balanced_member_assignment(10, 3, torch.device("cpu"))
    assert order.shape == (12,)  # ceil(10 / 3) = 4 slots per member, 2 of them padding
    assert sorted(set(order.tolist())) == list(range(10))
    torch.testing.assert_close(order[inverse], torch.arange(10))  # each row's own slot
    counts = torch.zeros(10, 3)
    for _ in range(3000):
        _, inverse = balanced_member_assignment(10, 3, torch.device("cpu"))
        counts[torch.arange(10), inverse // 4] += 1
    # every row's member is uniform over the 3 members (the padding falls at random slots)
    freq = counts / counts.sum(1, keepdim=True)
    assert (freq - 1 / 3).abs().max() < 0.04


def test_balanced_member_assignment_with_fewer_rows_than_members():
    # 3 rows, 8 members: 1 slot each, 5 of the 8 slots padding (more padding than rows).
    for _ in range(50):
        order, inverse = balanced_member_assignment(3, 8, torch.device("cpu"))
        assert order.shape == (8,)
        assert 0 <= order.min() and order.max() < 3
        torch.testing.assert_close(order[inverse], torch.arange(3))
        assert len(set(inverse.tolist())) == 3  # three different slots, so three members


def test_ensemble_step_takes_fewer_rows_than_members():
    nets = tiny_nets(ensemble_size=4, num_elites=4)
    params = nets.model.layer_params(nets.model.elite_idx, frozen=True)
    obs, action = torch.randn(1, 3), torch.rand(1, 2) * 2 - 1
    next_obs, reward, continue_prob = ensemble_step(
        nets.model, params, nets.obs_normalizer.frozen(), obs, action
    )
    assert next_obs.shape == (1, 3) and reward.shape == (1,) and continue_prob.shape == (1,)
    assert torch.isfinite(next_obs).all()


def test_ensemble_step_uses_the_assigned_member_per_row():
    nets = tiny_nets(ensemble_size=4, num_elites=2)
    model = nets.model
    normalize = nets.obs_normalizer.frozen()
    obs, action = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    members = torch.tensor([1, 3])
    params = model.layer_params(members, frozen=True)
    order, inverse = balanced_member_assignment(5, 2, torch.device("cpu"))
    torch.manual_seed(1)
    next_obs, reward, continue_prob = ensemble_step(
        model, params, normalize, obs, action, (order, inverse)
    )
    # recompute row by row with the member of that row's slot, and the same noise
    mean, log_std, logit = model(normalize(obs), action)  # all members: [E, 5, S+1]
    torch.manual_seed(1)
    noise = torch.randn(2, 3, 4)  # [K, slots per member, S+1], drawn in the same order
    for row in range(5):
        k, slot = divmod(inverse[row].item(), 3)
        member = members[k]
        sample = mean[member, row] + log_std[member, row].exp() * noise[k, slot]
        torch.testing.assert_close(next_obs[row], obs[row] + sample[:3])
        torch.testing.assert_close(reward[row], sample[3])
        torch.testing.assert_close(continue_prob[row], torch.sigmoid(-logit[member, row]))


def test_ensemble_step_passes_gradient_to_inputs_not_model():
    nets = tiny_nets()
    obs = torch.randn(6, 3, requires_grad=True)
    action = (torch.rand(6, 2) * 2 - 1).requires_grad_()
    params = nets.model.layer_params(nets.model.elite_idx, frozen=True)
    next_obs, reward, _ = ensemble_step(
        nets.model, params, nets.obs_normalizer.frozen(), obs, action
    )
    (next_obs.sum() + reward.sum()).backward()
    assert obs.grad.abs().sum() > 0 and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in nets.model.parameters())


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("num_samples", [1, 3])
@pytest.mark.parametrize("ensemble_size", [1, 4])
def test_shapes(batch_size, horizon, num_samples, ensemble_size):
    nets = tiny_nets(ensemble_size=ensemble_size, num_elites=1)
    m, v = imagine(
        torch.randn(batch_size, 3),
        None,
        horizon=horizon,
        num_samples=num_samples,
        gamma=GAMMA,
        model_step=lambda o, a: (o + a.sum(-1, keepdim=True), o[:, 0], torch.ones_like(o[:, 0])),
        policy=lambda o: torch.zeros(o.shape[0], 2),
        value=lambda o, a: (o[:, 0], torch.ones_like(o[:, 0])),
    )
    assert m.shape == v.shape == (num_samples, batch_size)
    for update in ("joint", "distill"):
        spec = UpdateSpec(
            horizon=horizon, num_samples=num_samples, gamma=GAMMA, policy_update=update
        )
        terms, metrics = update_terms(nets, random_batch(batch_size), spec)
        assert all(term.shape == (batch_size,) for term in terms.values()), {
            k: tuple(x.shape) for k, x in terms.items()
        }
        assert all(value.dim() == 0 for value in metrics.values())


def test_seeded_update_is_deterministic():
    def run():
        torch.manual_seed(3)
        nets = tiny_nets()
        terms, _ = update_terms(
            nets, random_batch(8), UpdateSpec(horizon=3, num_samples=2, gamma=GAMMA)
        )
        return terms

    first, second = run(), run()
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
