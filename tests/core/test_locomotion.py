"""The locomotion additions: value heads and their aggregates, the return range, the
model-state buffer and distribution rollouts, start-state mixing, standardised model targets."""

from __future__ import annotations

import math

import pytest
import torch

from drive_rllib.core import UpdateSpec, combine_terms, ensemble_step, update_terms
from drive_rllib.core.distributions import aggregate_heads
from drive_rllib.core.imagine import distribution_rollout
from drive_rllib.core.networks import ModelStateBuffer, ReturnRange
from drive_rllib.core.update import (
    bootstrap_counts,
    distribution_rollout_states,
    imagination,
    model_value_rows,
    start_states,
    value_step,
)
from tests.core.helpers import random_batch, t, tiny_nets

# --- aggregates of the value heads -------------------------------------------------------------


def test_mean_aggregate_is_the_moment_matched_mixture_by_hand():
    mu = t(1.0, 4.0, 3.0, 2.0).view(2, 2)  # heads x batch
    sigma = t(1.0, 1.0, 2.0, 1.0).view(2, 2)
    m, s = aggregate_heads(mu, sigma, "mean")
    # column 0: mean (1 + 3) / 2 = 2, variance (1 + 4) / 2 + var(1, 3) = 2.5 + 1 = 3.5
    # column 1: mean (4 + 2) / 2 = 3, variance (1 + 1) / 2 + var(4, 2) = 1 + 1 = 2
    torch.testing.assert_close(m, t(2.0, 3.0))
    torch.testing.assert_close(s, t(math.sqrt(3.5), math.sqrt(2.0)))


def test_min2_of_two_heads_takes_the_lower_mean_and_its_own_sigma():
    mu = t(1.0, 4.0, 3.0, 2.0).view(2, 2)
    sigma = t(1.0, 5.0, 2.0, 7.0).view(2, 2)
    m, s = aggregate_heads(mu, sigma, "min2")
    torch.testing.assert_close(m, t(1.0, 2.0))  # head 0 in column 0, head 1 in column 1
    torch.testing.assert_close(s, t(1.0, 7.0))


def test_with_one_head_every_aggregate_is_that_head():
    mu, sigma = t(1.0, -2.0).view(1, 2), t(0.5, 3.0).view(1, 2)
    for how in ("mean", "min2"):
        m, s = aggregate_heads(mu, sigma, how)
        torch.testing.assert_close(m, mu[0])
        torch.testing.assert_close(s, sigma[0])


def test_min2_of_three_heads_draws_one_random_pair_for_the_whole_batch():
    # Heads with means 0 < 1 < 2: the pair's minimum is 0 unless the pair is {1, 2} (1 in 3).
    mu = t(0.0, 0.0, 1.0, 1.0, 2.0, 2.0).view(3, 2)
    sigma = torch.ones_like(mu)
    draws = torch.stack([aggregate_heads(mu, sigma, "min2")[0] for _ in range(3000)])
    assert torch.equal(draws[:, 0], draws[:, 1])  # one pair per call, not per element
    assert set(draws[:, 0].tolist()) == {0.0, 1.0}
    assert abs((draws[:, 0] == 1.0).double().mean().item() - 1 / 3) < 0.03


def test_value_evaluates_only_the_heads_asked_for():
    nets = tiny_nets(value_heads=4, value_scaled=False)
    for layer in nets.value.layers:  # non-zero last layer: every head differs
        torch.nn.init.normal_(layer.weight)
    obs, action = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    mu, sigma = nets.value(obs, action)
    heads = torch.tensor([3, 1])
    mu_two, sigma_two = nets.value(obs, action, heads=heads)
    torch.testing.assert_close(mu_two, mu[heads])
    torch.testing.assert_close(sigma_two, sigma[heads])


def test_the_min2_target_value_evaluates_two_heads_and_equals_the_aggregate_of_all():
    nets = tiny_nets(value_heads=5)
    for layer in nets.target_value.layers:
        torch.nn.init.normal_(layer.weight)
    nets.return_range.update(torch.tensor(-1.0), torch.tensor(2.0), gamma=0.9, rate=1.0)
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, 6, torch.device("cpu"), UpdateSpec())
    obs, action = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    evaluated = []
    forward = nets.target_value.forward
    nets.target_value.forward = lambda *a, **k: evaluated.append(forward(*a, **k)) or evaluated[-1]
    for seed in range(5):
        torch.manual_seed(seed)
        mu, sigma = shared.target_value(obs, action)
        assert evaluated[-1][0].shape == (2, 6)  # only the drawn pair was evaluated
        torch.manual_seed(seed)  # the same draw, over all five heads
        expected = aggregate_heads(*forward(normalize(obs), action, nets.value_scale()), "min2")
        torch.testing.assert_close(mu, expected[0])
        torch.testing.assert_close(sigma, expected[1])


def test_unknown_aggregate_is_refused():
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_heads(t(1.0).view(1, 1), t(1.0).view(1, 1), "max")


# --- the return range ----------------------------------------------------------------------------


def test_return_range_starts_at_the_rewards_returns_then_follows_at_its_rate():
    returns = ReturnRange()
    assert not returns.is_set
    center, width = returns.scale()
    assert (center.item(), width.item()) == (0.0, 1.0)  # identity while unset
    torch.testing.assert_close(returns.clip(torch.tensor([1e9])), torch.tensor([1e9]))
    returns.update(torch.tensor(-1.0), torch.tensor(3.0), gamma=0.9, rate=0.25)
    # first update sets: -1 / (1 - 0.9) = -10 and 3 / 0.1 = 30
    torch.testing.assert_close(returns.low, torch.tensor(-10.0))
    torch.testing.assert_close(returns.high, torch.tensor(30.0))
    returns.update(torch.tensor(1.0), torch.tensor(7.0), gamma=0.9, rate=0.25)
    # then a quarter of the way: -10 + 0.25 (10 - -10) = -5; 30 + 0.25 (70 - 30) = 40
    torch.testing.assert_close(returns.low, torch.tensor(-5.0))
    torch.testing.assert_close(returns.high, torch.tensor(40.0))
    center, width = returns.scale()
    torch.testing.assert_close(center, torch.tensor(17.5))
    torch.testing.assert_close(width, torch.tensor(22.5))
    torch.testing.assert_close(
        returns.clip(torch.tensor([-9.0, 0.0, 99.0])), torch.tensor([-5.0, 0.0, 40.0])
    )


def test_scaled_value_starts_at_the_center_of_the_return_range():
    nets = tiny_nets(value_heads=3)
    nets.return_range.update(torch.tensor(-1.0), torch.tensor(3.0), gamma=0.9, rate=1.0)
    mu, sigma = nets.value(torch.randn(4, 3), torch.rand(4, 2), nets.value_scale())
    assert mu.shape == sigma.shape == (3, 4)
    torch.testing.assert_close(mu, torch.full((3, 4), 10.0))  # (30 + -10) / 2
    # sigma = sigma_min + width * softplus(0) = 0.1 + 20 log 2
    torch.testing.assert_close(sigma, torch.full((3, 4), 0.1 + 20.0 * math.log(2.0)))


# --- the model-state buffer and distribution rollouts --------------------------------------------


def test_model_state_buffer_keeps_the_newest_states_in_a_ring():
    buffer = ModelStateBuffer(obs_dim=2, capacity=5)
    buffer.add(torch.arange(6.0).view(3, 2))  # states 0, 1, 2
    assert int(buffer.size) == 3
    buffer.add(torch.arange(6.0, 14.0).view(4, 2))  # states 3..6: 5 and 6 overwrite 0 and 1
    assert int(buffer.size) == 5 and int(buffer.cursor) == 2
    held = sorted(buffer.states[:, 0].tolist())
    assert held == [4.0, 6.0, 8.0, 10.0, 12.0]  # first coordinates of states 2..6
    buffer.add(torch.arange(100.0, 120.0).view(10, 2))  # more than the capacity: the last 5
    assert sorted(buffer.states[:, 0].tolist()) == [110.0, 112.0, 114.0, 116.0, 118.0]
    sample = buffer.sample(7)
    assert sample.shape == (7, 2)
    assert set(sample[:, 0].tolist()) <= {110.0, 112.0, 114.0, 116.0, 118.0}


def test_model_state_buffer_samples_only_the_states_it_holds():
    # Read as tensors (no host sync): an empty buffer gives zeros, which start_states
    # does not use; a partly filled one draws from its filled rows only, every one of them.
    buffer = ModelStateBuffer(obs_dim=2, capacity=8)
    assert torch.equal(buffer.sample(4), torch.zeros(4, 2))
    buffer.add(torch.arange(1.0, 7.0).view(3, 2))  # states 1, 3, 5 (first coordinates)
    torch.manual_seed(0)
    drawn = buffer.sample(300)[:, 0].tolist()
    assert set(drawn) == {1.0, 3.0, 5.0}
    assert all(60 < drawn.count(value) < 140 for value in (1.0, 3.0, 5.0))  # about 100 each


def test_distribution_rollout_keeps_every_state_until_termination():
    # Toy dynamics: s' = s + 1; a row terminates on the step that reaches s' >= 3.
    def model_step(obs, action):
        next_obs = obs + 1.0
        continue_prob = (next_obs[:, 0] < 3.0).float()
        return next_obs, torch.zeros(obs.shape[0]), continue_prob

    start = torch.tensor([[0.0], [10.0]])  # row 1 is already past the threshold
    states = distribution_rollout(
        start, horizon=4, model_step=model_step, policy=lambda o: torch.zeros(o.shape[0], 1)
    )
    # starts 0 and 10; then row 0 visits 1, 2 (alive), reaches 3 (terminates: dropped);
    # row 1 terminates on its first step.
    assert sorted(states[:, 0].tolist()) == [0.0, 1.0, 2.0, 10.0]


def test_distribution_rollout_through_the_networks_has_the_states_of_horizon_plus_one_steps():
    nets = tiny_nets(termination="none")
    spec = UpdateSpec(distribution_rollout_horizon=3)
    states = distribution_rollout_states(nets, torch.randn(5, 3), spec)
    assert states.shape == (5 * 4, 3)
    assert torch.isfinite(states).all()


def test_start_states_mix_model_states_and_real_states_in_the_given_share():
    nets = tiny_nets(termination="none")
    spec = UpdateSpec(start_state_model_fraction=0.25)
    obs = torch.arange(8.0).view(8, 1).repeat(1, 3)
    assert start_states(nets, obs, spec) is obs  # no buffer: all real
    nets = tiny_nets(termination="none")
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=4)
    torch.testing.assert_close(start_states(nets, obs, spec), obs)  # empty buffer: all real
    nets.model_states.add(torch.full((4, 3), -1.0))
    mixed = start_states(nets, obs, spec)
    assert mixed.shape == (8, 3)
    # round(8 * 0.25) = 2 model states first, then the first 6 real states
    torch.testing.assert_close(mixed[:2], torch.full((2, 3), -1.0))
    torch.testing.assert_close(mixed[2:], obs[:6])


def test_posterior_batch_size_takes_that_many_start_states_in_the_same_share():
    obs = torch.arange(8.0).view(8, 1).repeat(1, 3)
    nets = tiny_nets(termination="none")
    real = start_states(nets, obs, UpdateSpec(posterior_batch_size=3))
    torch.testing.assert_close(real, obs[:3])  # no buffer: the batch's first 3 rows
    assert start_states(nets, obs, UpdateSpec(posterior_batch_size=8)) is obs
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=4)
    nets.model_states.add(torch.full((4, 3), -1.0))
    mixed = start_states(
        nets, obs, UpdateSpec(start_state_model_fraction=0.25, posterior_batch_size=4)
    )
    # round(4 * 0.25) = 1 model state, then the first 3 real states
    torch.testing.assert_close(mixed, torch.cat([torch.full((1, 3), -1.0), obs[:3]]))
    with pytest.raises(ValueError, match="lower posterior_batch_size"):
        start_states(nets, obs, UpdateSpec(posterior_batch_size=9))
    with pytest.raises(ValueError, match="member_per_trajectory=False"):
        UpdateSpec(posterior_batch_size=4, member_per_trajectory=True)


def test_posterior_batch_size_k_trains_q_phi_on_the_first_k_rows_only():
    # the rows past k reach f_hat and Eq. 4 but not Eq. 6: changing them leaves q_phi's
    # gradient as it is (the same random draws), while with every row it changes
    def posterior_grads(spec, batch):
        torch.manual_seed(1)
        nets = tiny_nets(termination="none")
        terms, _ = update_terms(nets, batch, spec)
        combine_terms(terms, dict.fromkeys(terms, 1.0)).backward()
        grads = [param.grad.clone() for param in nets.posterior.parameters()]
        rows = {name: term.shape[0] for name, term in terms.items()}
        return grads, rows

    torch.manual_seed(0)
    batch = random_batch(batch_size=8)
    changed = {**batch, "obs": torch.cat([batch["obs"][:3], batch["obs"][3:] + 1.0])}
    for size, same in [(3, True), (0, False)]:
        spec = UpdateSpec(horizon=2, start_state_model_fraction=0.0, posterior_batch_size=size)
        grads, rows = posterior_grads(spec, batch)
        grads_changed, _ = posterior_grads(spec, changed)
        assert all(torch.equal(a, b) for a, b in zip(grads, grads_changed)) is same
        assert rows["model"] == rows["value_mean"] == 8
        assert rows["kl_prior"] == rows["return"] == (size or 8)


def test_spec_refuses_model_start_states_without_distribution_rollouts():
    with pytest.raises(ValueError, match="distribution_rollout_interval > 0"):
        UpdateSpec(start_state_model_fraction=0.5, distribution_rollout_interval=0)
    assert UpdateSpec(start_state_model_fraction=0.0, distribution_rollout_interval=0)
    assert UpdateSpec().model_state_capacity == 10 * 256 * 21
    assert (
        UpdateSpec(
            start_state_model_fraction=0.0, distribution_rollout_interval=0
        ).model_state_capacity
        == 0
    )


# --- Eq. 4 per head; standardised model targets ---------------------------------------------------


def test_eq4_fits_every_head_to_the_same_target_law_and_sums_the_heads():
    # H = 1 with a stub psi_bar of mu 5, sigma 2: the target law is N(r + gamma (1-d) 5,
    # gamma^2 (1-d) 4) whatever the policy draws, so every term can be worked out.
    nets = tiny_nets(value_heads=3, value_scaled=False)
    spec = UpdateSpec(
        horizon=1,
        gamma=0.9,
        value_bounds=False,
        start_state_model_fraction=0.0,
        distribution_rollout_interval=0,
    )
    batch = random_batch(6, terminated=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]))
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, 6, torch.device("cpu"), spec)
    shared.target_value = lambda o, a: (
        torch.full((o.shape[0],), 5.0),
        torch.full((o.shape[0],), 2.0),
    )
    eq4 = value_step(nets, normalize(batch["obs"]), shared, batch, spec)
    alive = 1.0 - batch["terminated"]
    m = batch["reward"] + 0.9 * alive * 5.0
    v = 0.81 * alive * 4.0
    torch.testing.assert_close(eq4.target_m[0], m)
    torch.testing.assert_close(eq4.target_v[0], v)
    mu, sigma = nets.value(normalize(batch["obs"]), batch["action"])
    assert mu.shape == (3, 6)
    torch.testing.assert_close(eq4.terms["value_mean"], (0.5 * (mu - m).square()).sum(0))
    cross_entropy = (
        torch.log(sigma)
        + 0.5 * math.log(2 * math.pi)
        + ((m - mu).square() + v) / (2 * sigma.square())
    )
    torch.testing.assert_close(eq4.terms["value_sigma"], cross_entropy.sum(0))


def test_value_bounds_clip_the_target_means_to_the_return_range():
    nets = tiny_nets(value_heads=2, value_scaled=False)
    nets.return_range.update(torch.tensor(-0.1), torch.tensor(0.2), gamma=0.9, rate=1.0)
    spec = UpdateSpec(
        horizon=1, gamma=0.9, start_state_model_fraction=0.0, distribution_rollout_interval=0
    )
    batch = random_batch(6)
    batch["reward"] = torch.tensor([-50.0, -1.0, 0.0, 1.0, 1.5, 50.0])
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, 6, torch.device("cpu"), spec)
    shared.target_value = lambda o, a: (torch.zeros(o.shape[0]), torch.ones(o.shape[0]))
    eq4 = value_step(nets, normalize(batch["obs"]), shared, batch, spec)
    # the range is [-0.1, 0.2] / (1 - 0.9) = [-1, 2]
    torch.testing.assert_close(eq4.target_m[0], torch.tensor([-1.0, -1.0, 0.0, 1.0, 1.5, 2.0]))


def stub_eq4(nets, batch, spec):
    """Eq. 4's imagination with a stub psi_bar (mu 5, sigma 2) and a stub model step: s' = s
    + 1, reward 3, the trajectory falls where s[:, 0] > 100."""
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, batch["obs"].shape[0], torch.device("cpu"), spec)
    shared.target_value = lambda o, a: (
        torch.full((o.shape[0],), 5.0),
        torch.full((o.shape[0],), 2.0),
    )
    shared.raw_model_step = lambda o, a: (
        o + 1.0,
        torch.full((o.shape[0],), 3.0),
        (o[:, 0] <= 100.0).float(),
    )
    return normalize, shared


def test_eq4_model_rows_replace_the_last_real_rows_with_h_imagined_steps_from_model_states():
    # 8 rows, value_model_fraction 0.25: rows 0-5 real (r + gamma (1-d) 5), rows 6-7 model
    # states with a ~ pi_theta and two imagined steps (H = 2): m = 3 + 0.9 * 3 + 0.81 * 5,
    # v = 0.81^2 * 4; the state at 200 falls on its first imagined step: m = 3, v = 0.
    nets = tiny_nets(value_heads=2, value_scaled=False)
    spec = UpdateSpec(horizon=2, gamma=0.9, value_bounds=False, value_model_fraction=0.25)
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=2)
    nets.model_states.add(torch.tensor([[200.0, 0.0, 0.0], [200.0, 0.0, 0.0]]))
    batch = random_batch(8)
    normalize, shared = stub_eq4(nets, batch, spec)
    eq4 = value_step(nets, normalize(batch["obs"]), shared, batch, spec)
    # the real rows: the real step, one imagined step (s' + 1 stays below 100), psi_bar
    torch.testing.assert_close(eq4.target_m[0, :6], batch["reward"][:6] + 0.9 * (3.0 + 0.9 * 5.0))
    torch.testing.assert_close(eq4.target_m[0, 6:], torch.full((2,), 3.0))
    torch.testing.assert_close(eq4.target_v[0, 6:], torch.zeros(2))
    assert eq4.value_mu.shape == (2, 8) and eq4.terms["value_mean"].shape == (8,)
    # the heads of the model rows are read at the model states
    states, action, m, v = model_value_rows(nets, shared, batch["obs"], 2, spec)
    torch.testing.assert_close(states, torch.tensor([[200.0, 0.0, 0.0]] * 2))
    assert action.shape == (2, 2) and action.abs().max() <= 1.0
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=2)
    nets.model_states.add(torch.zeros(2, 3))
    _, _, m, v = model_value_rows(nets, shared, batch["obs"], 2, spec)
    torch.testing.assert_close(m[0], torch.full((2,), 3.0 + 0.9 * 3.0 + 0.81 * 5.0))
    torch.testing.assert_close(v[0], torch.full((2,), 0.81**2 * 4.0))


def test_eq4_with_value_model_fraction_one_fits_model_states_only():
    # DHMBPO's critic: every row a model state; the state at 200 falls on its first step.
    nets = tiny_nets(value_heads=2, value_scaled=False)
    spec = UpdateSpec(horizon=2, gamma=0.9, value_bounds=False, value_model_fraction=1.0)
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=2)
    nets.model_states.add(torch.tensor([[200.0, 0.0, 0.0], [200.0, 0.0, 0.0]]))
    batch = random_batch(4)
    normalize, shared = stub_eq4(nets, batch, spec)
    eq4 = value_step(nets, normalize(batch["obs"]), shared, batch, spec)
    torch.testing.assert_close(eq4.target_m[0], torch.full((4,), 3.0))
    torch.testing.assert_close(eq4.target_v[0], torch.zeros(4))
    assert eq4.value_mu.shape == (2, 4) and eq4.terms["value_mean"].shape == (4,)


def test_eq4_model_rows_use_the_batch_states_while_the_buffer_is_empty():
    nets = tiny_nets(value_heads=2, value_scaled=False)
    spec = UpdateSpec(horizon=1, gamma=0.9, value_bounds=False, value_model_fraction=0.5)
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=4)
    batch = random_batch(6)
    _, shared = stub_eq4(nets, batch, spec)
    states, _, m, _ = model_value_rows(nets, shared, batch["obs"], 3, spec)
    torch.testing.assert_close(states, batch["obs"][:3])
    torch.testing.assert_close(m[0], torch.full((3,), 3.0 + 0.9 * 5.0))


def test_eq4_model_rows_reach_psi_only():
    torch.manual_seed(0)
    nets = tiny_nets()
    spec = UpdateSpec(horizon=2, gamma=0.9, value_model_fraction=0.5)
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=8)
    nets.model_states.add(torch.randn(8, 3))
    terms, _ = update_terms(nets, random_batch(8), spec)
    (terms["value_mean"].mean() + terms["value_sigma"].mean()).backward()
    reached = {
        group
        for group, params in nets.parameter_groups().items()
        if any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    }
    assert reached == {"value"}


def floor_grads(spec, buffer_value=1.0, obs_shift=0.0, recent_shift=None):
    """The entropy floor's gradient into pi_theta (same nets and draws every call): the
    model-state buffer filled with ``buffer_value``, the batch's rows moved by
    ``obs_shift``, and with ``recent_shift`` its recent_obs the unmoved rows moved so."""
    torch.manual_seed(1)
    nets = tiny_nets()
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=8)
    nets.model_states.add(torch.full((8, 3), buffer_value))
    torch.manual_seed(0)
    batch = random_batch(8)
    if recent_shift is not None:
        batch["recent_obs"] = batch["obs"] + recent_shift
    batch["obs"] = batch["obs"] + obs_shift
    torch.manual_seed(2)
    terms, _ = update_terms(nets, batch, spec)
    terms["entropy"].mean().backward()
    return torch.cat([p.grad.flatten() for p in nets.prior.parameters()])


def test_entropy_floor_real_states_moves_the_floor_from_the_start_states_to_the_batch():
    # Eq. 6 starts from model states here; the floor's gradient into pi_theta follows the
    # model states by default and the batch's real states with the flag (same draws).
    start, real = UpdateSpec(horizon=1), UpdateSpec(horizon=1, entropy_floor_real_states=True)
    base = floor_grads(start)
    assert not torch.equal(base, floor_grads(start, buffer_value=2.0))  # the model states
    assert torch.equal(base, floor_grads(start, obs_shift=0.5))  # not the real ones
    at_real = floor_grads(real)
    assert torch.equal(at_real, floor_grads(real, buffer_value=2.0))
    assert not torch.equal(at_real, floor_grads(real, obs_shift=0.5))


def test_entropy_floor_recent_rows_puts_the_floor_at_the_batchs_recent_states():
    # The floor's gradient into pi_theta follows recent_obs, neither the batch's rows nor
    # the model states; at recent states equal to the rows it is the real-states floor's.
    recent = UpdateSpec(horizon=1, entropy_floor_recent_rows=5)
    base = floor_grads(recent, recent_shift=0.0)
    real = UpdateSpec(horizon=1, entropy_floor_real_states=True)
    assert torch.equal(base, floor_grads(real, recent_shift=0.0))  # recent = rows: same
    moved = floor_grads(recent, recent_shift=0.5)
    assert not torch.equal(base, moved)  # follows the recent states
    assert torch.equal(moved, floor_grads(recent, recent_shift=0.5, buffer_value=2.0))
    # Moving the rows but not the recent states leaves the floor's gradient alone.
    assert torch.equal(base, floor_grads(recent, obs_shift=0.5, recent_shift=0.0))


def test_entropy_floor_recent_rows_without_recent_states_names_the_setting():
    batch = random_batch(8)
    with pytest.raises(ValueError, match="entropy_floor_recent_rows"):
        update_terms(tiny_nets(), batch, UpdateSpec(horizon=1, entropy_floor_recent_rows=100))
    with pytest.raises(ValueError, match="entropy_floor_recent_rows"):
        UpdateSpec(entropy_floor_recent_rows=-1)


def test_value_horizon_one_gives_the_one_step_target_whatever_the_horizon():
    # H 5 for Eq. 6, value_horizon 1 for Eq. 4: real rows r + gamma (1-d) 5, model rows
    # one imagined step 3 + gamma 5 (stub psi_bar and model of stub_eq4)
    nets = tiny_nets(value_heads=2, value_scaled=False)
    spec = UpdateSpec(
        horizon=5, value_horizon=1, gamma=0.9, value_bounds=False, value_model_fraction=0.25
    )
    assert spec.eq4_horizon == 1 and UpdateSpec(horizon=5).eq4_horizon == 5
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=2)
    nets.model_states.add(torch.zeros(2, 3))
    batch = random_batch(8, terminated=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
    normalize, shared = stub_eq4(nets, batch, spec)
    eq4 = value_step(nets, normalize(batch["obs"]), shared, batch, spec)
    alive = 1.0 - batch["terminated"][:6]
    torch.testing.assert_close(eq4.target_m[0, :6], batch["reward"][:6] + 0.9 * alive * 5.0)
    torch.testing.assert_close(eq4.target_m[0, 6:], torch.full((2,), 3.0 + 0.9 * 5.0))


def test_value_head_bootstrap_weights_each_head_by_its_own_draw_of_the_rows():
    counts = bootstrap_counts(4, 50, torch.device("cpu"))
    assert counts.shape == (4, 50)
    torch.testing.assert_close(counts.sum(1), torch.full((4,), 50.0))
    assert torch.equal(counts, counts.round()) and (counts >= 0).all()
    assert not torch.equal(counts[0], counts[1])  # each head its own draw

    def eq4(bootstrap, heads):
        torch.manual_seed(3)
        nets = tiny_nets(value_heads=heads, value_scaled=False)
        spec = UpdateSpec(horizon=1, gamma=0.9, value_bounds=False, value_head_bootstrap=bootstrap)
        batch = random_batch(6)
        normalize, shared = stub_eq4(nets, batch, spec)
        return value_step(nets, normalize(batch["obs"]), shared, batch, spec)

    # one head: the bootstrap multiplies each row's term by its count (the draws come
    # last in value_step, so the rest of the step is the same)
    plain, boot = eq4(False, 1), eq4(True, 1)
    ratio = boot.terms["value_mean"] / plain.terms["value_mean"]
    torch.testing.assert_close(ratio, ratio.round())
    torch.testing.assert_close(ratio.sum(), torch.tensor(6.0))
    # three heads: the same targets, the terms differ from the plain sum over heads
    plain, boot = eq4(False, 3), eq4(True, 3)
    torch.testing.assert_close(boot.target_m, plain.target_m)
    assert not torch.allclose(boot.terms["value_mean"], plain.terms["value_mean"])


def test_spec_refuses_model_value_rows_without_distribution_rollouts():
    with pytest.raises(ValueError, match="value_model_fraction=0"):
        UpdateSpec(
            start_state_model_fraction=0.0,
            value_model_fraction=0.5,
            distribution_rollout_interval=0,
        )


def test_ensemble_step_maps_standardised_predictions_back_to_raw_units():
    nets = tiny_nets(termination="none")
    normalize = nets.obs_normalizer.frozen()
    params = nets.model.layer_params(nets.model.elite_idx, frozen=True)
    obs, action = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    offset, scale = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])
    torch.manual_seed(3)
    raw_next, raw_reward, _ = ensemble_step(nets.model, params, normalize, obs, action)
    torch.manual_seed(3)
    next_obs, reward, _ = ensemble_step(
        nets.model, params, normalize, obs, action, target_affine=(offset, scale)
    )
    # same draws: (s' - s) and r are offset + scale * the standardised prediction
    torch.testing.assert_close(next_obs - obs, offset[:3] + scale[:3] * (raw_next - obs))
    torch.testing.assert_close(reward, offset[3] + scale[3] * raw_reward)


# --- soft returns -------------------------------------------------------------------------------


def test_soft_returns_need_the_entropy_floor():
    from drive_rllib.core.spec import DRIVESpec, NetworkSpec

    with pytest.raises(ValueError, match="entropy_in_returns"):
        DRIVESpec(NetworkSpec(entropy_floor=False), UpdateSpec(entropy_in_returns=True))
    DRIVESpec(NetworkSpec(entropy_floor=True), UpdateSpec(entropy_in_returns=True))


def test_soft_returns_pair_each_bonus_with_the_reward_of_its_step():
    from drive_rllib.core.update import imagined_step_rewards, posterior_step

    torch.manual_seed(0)
    nets = tiny_nets(initial_entropy_weight=2.0)
    spec = UpdateSpec(horizon=3, entropy_in_returns=True, start_state_model_fraction=0.0)
    batch = random_batch(8)
    normalize = nets.obs_normalizer.frozen()
    shared = imagination(nets, normalize, 8, torch.device("cpu"), spec)
    posterior_step(nets, batch["obs"], normalize(batch["obs"]), shared, spec)
    # H rewards r_0..r_2 (a_0 is q_phi's), H bonuses of pi_theta's a_1..a_3 (a_3 bootstraps).
    rewards, bonuses = shared.imagined_rewards, shared.imagined_bonuses
    assert len(rewards) == 3 and len(bonuses) == 3
    assert all(torch.all(b != 0) for b in bonuses)
    expected = torch.cat([rewards[0], rewards[1] + bonuses[0], rewards[2] + bonuses[1]])
    torch.testing.assert_close(imagined_step_rewards(shared), expected)
    # Plain returns: the rewards alone.
    plain_spec = UpdateSpec(horizon=3, start_state_model_fraction=0.0)
    plain = imagination(nets, normalize, 8, torch.device("cpu"), plain_spec)
    posterior_step(nets, batch["obs"], normalize(batch["obs"]), plain, plain_spec)
    assert plain.entropy_weight is None and not plain.imagined_bonuses
    torch.testing.assert_close(imagined_step_rewards(plain), torch.cat(plain.imagined_rewards))


def test_soft_returns_keep_a_distilled_pi_theta_out_of_eq6():
    # policy_update="distill" holds pi_theta fixed in Eq. 6: the log pi of its rollout
    # actions (the bonus) carries no gradient into theta either.
    torch.manual_seed(0)
    nets = tiny_nets(initial_entropy_weight=1.0)
    spec = UpdateSpec(
        horizon=2, entropy_in_returns=True, start_state_model_fraction=0.0, policy_update="distill"
    )
    terms, _ = update_terms(nets, random_batch(8), spec)
    prior = list(nets.prior.parameters())
    grads = torch.autograd.grad(terms["return"].mean(), prior, allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads)
    posterior = list(nets.posterior.parameters())
    grads = torch.autograd.grad(terms["return"].mean(), posterior, allow_unused=True)
    assert any(g is not None and torch.any(g != 0) for g in grads)
