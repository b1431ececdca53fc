"""Networks: the ensemble learns a known noisy system; normaliser; bounds; elites; Polyak."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drive_rllib.core import (
    DRIVENetworks,
    DynamicsEnsemble,
    NetworkSpec,
    RunningNormalizer,
    model_terms,
)
from drive_rllib.core.networks import HostCopy, ReturnRange
from drive_rllib.core.spec import UpdateSpec
from drive_rllib.core.update import MODEL_TERMS, model_fit, update_terms
from tests.core.helpers import CountHostReads, random_batch, tiny_nets

NOISE_STD = 0.1


def linear_system(num_rows: int, generator: torch.Generator):
    """s' = s + 0.1 (A s + B a) + noise, r = c . s + d . a + noise, all noise std 0.1."""
    a_matrix = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.5], [0.2, -0.3, -0.5]])
    b_matrix = torch.tensor([[0.5, 0.0], [0.0, 1.0], [0.3, -0.2]])
    c, d = torch.tensor([1.0, -0.5, 0.2]), torch.tensor([0.3, -0.1])
    obs = torch.randn(num_rows, 3, generator=generator)
    action = torch.rand(num_rows, 2, generator=generator) * 2 - 1
    noise = NOISE_STD * torch.randn(num_rows, 4, generator=generator)
    next_obs = obs + 0.1 * (obs @ a_matrix.T + action @ b_matrix.T) + noise[:, :3]
    reward = obs @ c + action @ d + noise[:, 3]
    return obs, action, reward, next_obs


def test_ensemble_reaches_the_noise_floor_with_calibrated_variances():
    generator = torch.Generator().manual_seed(0)
    train, held_out = linear_system(4000, generator), linear_system(2000, generator)
    normalizer = RunningNormalizer(3)
    normalizer.update(train[0])
    model = DynamicsEnsemble(
        3, 2, num_members=3, num_elites=2, hiddens=(64, 64), learn_termination=False
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    obs, action, reward, next_obs = train
    target = torch.cat([next_obs - obs, reward.unsqueeze(-1)], -1)
    for _ in range(1500):
        boot = torch.randint(4000, (3, 256), generator=generator)
        mean, log_std, logit = model(normalizer(obs)[boot], action[boot])
        loss = model_terms(
            mean, log_std, logit, target[boot], torch.zeros(3, 256), learn_termination=False
        )["model"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    obs, action, reward, next_obs = held_out
    errors = model.holdout_errors(normalizer(obs), action, reward, next_obs, obs)
    noise_var = NOISE_STD**2
    # held-out MSE of the mean close to the noise floor (0.01); a constant predictor is ~100x worse
    assert errors.max().item() < 1.3 * noise_var, errors
    with torch.no_grad():
        mean, log_std, _ = model(normalizer(obs), action)
        z = (torch.cat([next_obs - obs, reward.unsqueeze(-1)], -1) - mean) / log_std.exp()
        predicted_std = log_std.exp().mean().item()
    # calibrated: predicted std near the true 0.1, standardised errors of unit variance
    assert predicted_std == pytest.approx(NOISE_STD, rel=0.2)
    assert z.square().mean().item() == pytest.approx(1.0, abs=0.25)
    model.set_elites(errors)
    assert model.elite_idx.tolist() == torch.argsort(errors)[:2].tolist()
    torch.testing.assert_close(model.holdout_error, errors)


def test_layer_normed_silu_ensemble_on_standardised_targets_reaches_the_noise_floor():
    """The locomotion model (layer norm, SiLU, standardised targets, AdamW weight decay),
    fitted by the update step's own ``model_fit``, is as accurate on the linear system."""
    generator = torch.Generator().manual_seed(0)
    train, held_out = linear_system(4000, generator), linear_system(2000, generator)
    obs, action, reward, next_obs = train
    normalizer, target_normalizer = RunningNormalizer(3), RunningNormalizer(4)
    normalizer.update(obs)
    target_normalizer.update(torch.cat([next_obs - obs, reward.unsqueeze(-1)], -1))
    model = DynamicsEnsemble(
        3,
        2,
        num_members=3,
        num_elites=2,
        hiddens=(64, 64),
        learn_termination=False,
        layer_norm=True,
        activation="silu",
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    affine = target_normalizer.affine()
    for _ in range(1500):
        rows = torch.randint(4000, (256,), generator=generator)
        batch = {
            "obs": obs[rows],
            "action": action[rows],
            "reward": reward[rows],
            "next_obs": next_obs[rows],
            "terminated": torch.zeros(256),
        }
        loss = model_fit(model, normalizer(batch["obs"]), batch, affine)["model"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    obs, action, reward, next_obs = held_out
    errors = model.holdout_errors(normalizer(obs), action, reward, next_obs, obs, affine)
    assert errors.max().item() < 1.3 * NOISE_STD**2, errors


def test_batched_members_equal_each_member_alone():
    model = DynamicsEnsemble(3, 2, num_members=4, num_elites=2, hiddens=(8, 8))
    obs, action = torch.randn(5, 3), torch.randn(5, 2)
    mean, log_std, logit = model(obs, action)
    for member in range(4):
        x = torch.cat([obs, action], -1)
        params = model.layer_params(torch.tensor([member]))
        for weight, bias in params[:-1]:
            x = torch.relu(x @ weight[0] + bias[0])
        out = x @ params[-1][0][0] + params[-1][1][0]
        torch.testing.assert_close(mean[member], out[:, :4])
        torch.testing.assert_close(logit[member], out[:, -1])
    assert (log_std >= model.log_std_min).all() and (log_std <= model.log_std_max).all()


def test_log_std_is_bounded_even_for_extreme_inputs():
    model = DynamicsEnsemble(3, 2, num_members=2, num_elites=1, hiddens=(8,))
    _, log_std, _ = model(1e4 * torch.randn(50, 3), torch.randn(50, 2))
    assert (log_std >= model.log_std_min - 1e-5).all() and (
        log_std <= model.log_std_max + 1e-5
    ).all()


def test_num_elites_must_fit_the_ensemble():
    with pytest.raises(ValueError, match=r"num_elites must be in \[1, num_members=3\]"):
        DynamicsEnsemble(3, 2, num_members=3, num_elites=4)


def test_normalizer_merges_sums_like_one_batch():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(100, 4))
    norm = RunningNormalizer(4)
    torch.testing.assert_close(norm(torch.ones(2, 4)), torch.ones(2, 4))  # identity when empty
    norm.update(torch.from_numpy(data[:30]).float())
    norm.update_from_sums(*RunningNormalizer.batch_sums(torch.from_numpy(data[30:])))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.std.numpy(), data.std(0), rtol=1e-5)
    out = norm(torch.from_numpy(data).float())
    np.testing.assert_allclose(out.mean(0).numpy(), 0.0, atol=1e-5)
    assert norm(torch.full((1, 4), 1e6)).max().item() == norm.clip


def test_value_sigma_is_bounded_below():
    nets = tiny_nets(sigma_min=0.25)
    with torch.no_grad():
        for p in nets.value.parameters():
            p.fill_(-10.0)
    _, sigma = nets.value(torch.randn(4, 3), torch.rand(4, 2))
    assert (sigma >= 0.25).all()


def test_polyak_and_acting():
    nets = tiny_nets()
    with torch.no_grad():
        for p in nets.value.parameters():
            p.add_(1.0)
    before = [p.clone() for p in nets.target_value.parameters()]
    nets.polyak_update(0.25)
    for old, new, source in zip(before, nets.target_value.parameters(), nets.value.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * source)
    obs = torch.randn(5, 3)
    deterministic = nets.act(obs, deterministic=True)
    torch.testing.assert_close(deterministic, torch.tanh(nets.prior(obs)[0]))
    assert nets.act(obs).abs().max() < 1.0


def test_parameter_groups_are_disjoint_and_complete():
    spec = NetworkSpec(
        policy_hiddens=(8,), value_hiddens=(8,), model_hiddens=(8,), ensemble_size=2, num_elites=1
    )
    nets = DRIVENetworks(3, 2, spec)
    groups = nets.parameter_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in nets.parameters() if p.requires_grad}
    assert set(ids) == trainable
    assert "entropy_floor" not in tiny_nets(entropy_floor=False).parameter_groups()


def test_host_copy_reads_the_device_only_after_a_write():
    counter = torch.tensor(3)
    host = HostCopy()
    with CountHostReads() as mode:
        assert [host.read(counter) for _ in range(3)] == [3, 3, 3]
        assert mode.reads == 1
        counter += 1  # an in-place write the copy was not told of
        assert host.read(counter) == 4
        counter += 1
        host.wrote(counter, 5)  # told: no read
        assert host.read(counter) == 5
        assert mode.reads == 2
        counter.copy_(torch.tensor(9))  # as load_state_dict writes a buffer
        assert host.read(counter) == 9
        replaced = torch.tensor(9)  # the same value in another tensor: read again
        assert host.read(replaced) == 9
        assert mode.reads == 4


def test_return_range_is_set_follows_its_buffer_through_a_restore():
    fresh, used = ReturnRange(), ReturnRange()
    used.update(torch.tensor(-1.0), torch.tensor(1.0), gamma=0.5, rate=0.1)
    assert used.is_set and not fresh.is_set
    fresh.load_state_dict(used.state_dict())
    assert fresh.is_set
    used.load_state_dict(ReturnRange().state_dict())
    assert not used.is_set


def test_model_batch_size_k_fits_every_member_on_its_own_k_bootstrap_rows():
    """``model_fit(rows=k)`` draws a [E, k] bootstrap: its terms are ``model_terms`` of
    exactly those rows ([k]); 0 means the whole batch; more than the batch is an error
    that names the setting. Through ``update_terms`` the model term has k rows and the
    other terms keep the batch's."""
    nets = tiny_nets(termination="learned")
    batch = random_batch(8)
    obs_n = batch["obs"]
    torch.manual_seed(3)
    terms = model_fit(nets.model, obs_n, batch, rows=3)
    torch.manual_seed(3)
    boot = torch.randint(8, (nets.model.num_members, 3))
    mean, log_std, logit = nets.model(obs_n[boot], batch["action"][boot])
    target = torch.cat([batch["next_obs"] - batch["obs"], batch["reward"][:, None]], -1)[boot]
    expected = model_terms(mean, log_std, logit, target, batch["terminated"][boot])
    assert terms["model"].shape == terms["termination"].shape == (3,)
    for name in ("model", "termination"):
        torch.testing.assert_close(terms[name], expected[name])
    assert model_fit(nets.model, obs_n, batch, rows=0)["model"].shape == (8,)
    with pytest.raises(ValueError, match="lower model_batch_size"):
        model_fit(nets.model, obs_n, batch, rows=9)
    spec = UpdateSpec(horizon=2, start_state_model_fraction=0.0, model_batch_size=3)
    all_terms, _ = update_terms(nets, batch, spec)
    assert all_terms["model"].shape == (3,)
    assert all(term.shape == (8,) for name, term in all_terms.items() if name not in MODEL_TERMS)


def test_the_floors_target_is_per_dim_times_a_unless_given():
    # A = 3 action dims: None -> -1 x 3 (SAC's -A) by default, -0.5 x 3 per dim; a given
    # target wins over the per-dim one.
    def target(**settings):
        return DRIVENetworks(5, 3, NetworkSpec(**settings)).entropy_floor.target_entropy.item()

    assert target() == -3.0
    assert target(target_entropy_per_dim=-0.5) == -1.5
    assert target(target_entropy=-2.0, target_entropy_per_dim=-0.5) == -2.0
