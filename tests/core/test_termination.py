"""Known termination rules: each rule at its boundaries on hand-made observations, the
masks after a fall in imagination (worked by hand), live-state filtering of distribution
rollouts, the spec's choices, and (with MuJoCo) agreement with the envs themselves."""

from __future__ import annotations

import math

import pytest
import torch

from drive_rllib.core import UpdateSpec, termination
from drive_rllib.core.imagine import distribution_rollout, ensemble_step, imagine
from drive_rllib.core.spec import NetworkSpec, Termination
from drive_rllib.core.update import distribution_rollout_states, update_terms
from tests.core.helpers import random_batch, tiny_nets


def rows(*values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def near(value: float):
    """A float32 margin's tolerance."""
    return pytest.approx(value, abs=1e-6)


# --- the rules at their boundaries ------------------------------------------------------------


def test_hopper_rule_at_each_boundary() -> None:
    rule = termination.rule_for("Hopper-v5")
    healthy = [1.25, 0.0, 0.1, -0.1, 0.05, 1.0, -2.0, 3.0, 0.5, -0.5, 9.0]  # 11 dims
    cases = {
        "healthy": (healthy, False),
        "z at 0.7 (open bound)": ([0.7, *healthy[1:]], True),
        "z just above 0.7": ([0.7001, *healthy[1:]], False),
        "angle at 0.2": ([1.25, 0.2, *healthy[2:]], True),
        "angle just inside -0.2": ([1.25, -0.1999, *healthy[2:]], False),
        "a joint at 100": ([*healthy[:3], 100.0, *healthy[4:]], True),
        "a joint at -99.9": ([*healthy[:3], -99.9, *healthy[4:]], False),
    }
    for name, (obs, ended) in cases.items():
        assert rule(rows(obs)).tolist() == [ended], name


def test_hopper_rule_reads_the_env_config() -> None:
    obs = rows([1.0, 0.25, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert termination.rule_for("Hopper-v5")(obs).item()  # angle 0.25 > 0.2
    wide = termination.rule_for("Hopper-v5", {"healthy_angle_range": (-0.3, 0.3)})
    assert not wide(obs).item()
    # With x in the observation every index moves by one.
    with_x = termination.rule_for(
        "Hopper-v5", {"exclude_current_positions_from_observation": False}
    )
    assert not with_x(rows([5.0, 1.0, 0.1, *[0.0] * 9])).item()
    assert with_x(rows([5.0, 0.5, 0.1, *[0.0] * 9])).item()
    assert termination.rule_for("Hopper-v5", {"terminate_when_unhealthy": False}) is None


def test_walker2d_rule_at_each_boundary() -> None:
    rule = termination.rule_for("Walker2d-v5")
    rest = [0.0] * 15  # 17 dims: z, angle, 6 joints, 9 velocities
    cases = [
        ([1.2, 0.0, *rest], False),
        ([0.8, 0.0, *rest], True),  # open bounds
        ([0.81, 0.0, *rest], False),
        ([2.0, 0.0, *rest], True),
        ([1.99, 0.0, *rest], False),
        ([1.2, 1.0, *rest], True),
        ([1.2, -0.99, *rest], False),
        ([1.2, 0.0, *[500.0] * 15], False),  # Walker2d checks no velocity
    ]
    for obs, ended in cases:
        assert rule(rows(obs)).item() is ended, obs[:2]


def test_ant_rule_at_each_boundary() -> None:
    rule = termination.rule_for("Ant-v5", {"include_cfrc_ext_in_observation": False})
    rest = [0.0] * 26  # 27 dims
    cases = [
        ([0.55, *rest], False),
        ([0.2, *rest], False),  # closed bounds, as Ant-v5's is_healthy
        ([0.1999, *rest], True),
        ([1.0, *rest], False),
        ([1.0001, *rest], True),
        ([0.55, math.inf, *rest[1:]], True),  # a non-finite entry
        ([0.55, math.nan, *rest[1:]], True),
    ]
    for obs, ended in cases:
        assert rule(rows(obs)).item() is ended, obs[:2]


def test_halfcheetah_never_terminates_and_unknown_envs_have_no_rule() -> None:
    assert termination.has_rule("HalfCheetah-v5")
    assert termination.rule_for("HalfCheetah-v5") is None
    assert not termination.has_rule("Pendulum-v1")
    with pytest.raises(KeyError):
        termination.rule_for("Pendulum-v1")


def test_a_user_env_registers_its_rule() -> None:
    def factory(config):
        return lambda obs: obs[:, 0] > config.get("limit", 1.0)

    termination.register_termination("MyTask-v0", factory)
    try:
        assert termination.rule_for("MyTask-v0", {"limit": 2.0})(rows([3.0], [1.5])).tolist() == [
            True,
            False,
        ]
    finally:
        termination._RULES.pop("MyTask-v0")
    with pytest.raises(TypeError):
        termination.register_termination("MyTask-v0", "not callable")


# --- the spec's choices --------------------------------------------------------------------------


def ended_above_one(obs: torch.Tensor) -> torch.Tensor:
    return obs[:, 0] > 1.0


def test_spec_termination_choices() -> None:
    auto = NetworkSpec()
    assert auto.termination is Termination.AUTO and auto.learn_termination and not auto.known_rule
    auto_rule = NetworkSpec(termination_rule=ended_above_one)
    assert auto_rule.known_rule is ended_above_one and not auto_rule.learn_termination
    known = NetworkSpec(termination="known", termination_rule=ended_above_one)
    assert known.known_rule is ended_above_one and not known.learn_termination
    learned = NetworkSpec(termination="learned", termination_rule=ended_above_one)
    assert learned.learn_termination and learned.known_rule is None
    none = NetworkSpec(termination="none", termination_rule=ended_above_one)
    assert not none.learn_termination and none.known_rule is None
    with pytest.raises(ValueError, match="no termination rule is given or registered"):
        NetworkSpec(termination="known")
    with pytest.raises(ValueError, match="must be one of"):
        NetworkSpec(termination="sometimes")
    with pytest.raises(ValueError, match="callable"):
        NetworkSpec(termination_rule=3)


# --- margins: the smoothed mask's gradient ----------------------------------------------------


def test_margins_at_each_boundary() -> None:
    hopper = termination.margin_of(termination.rule_for("Hopper-v5"))
    healthy = [1.25, 0.0, 0.1, -0.1, 0.05, 1.0, -2.0, 3.0, 0.5, -0.5, 9.0]
    # z 1.25 is 0.55 above 0.7; angle 0 is 0.2 inside; the largest entry 9 is 91 inside
    assert hopper(rows(healthy)).item() == near(0.2)
    assert hopper(rows([0.72, *healthy[1:]])).item() == near(0.02)
    assert hopper(rows([1.25, -0.15, *healthy[2:]])).item() == near(0.05)
    assert hopper(rows([1.25, 0.25, *healthy[2:]])).item() == near(-0.05)
    assert hopper(rows([*healthy[:3], -99.9, *healthy[4:]])).item() == pytest.approx(0.1, abs=1e-4)
    walker = termination.margin_of(termination.rule_for("Walker2d-v5"))
    rest = [0.0] * 15
    assert walker(rows([1.9, 0.0, *rest])).item() == near(0.1)  # 2.0 - 1.9
    assert walker(rows([1.2, -0.7, *rest])).item() == near(0.3)  # -0.7 - (-1)
    ant = termination.margin_of(termination.rule_for("Ant-v5"))
    assert ant(rows([0.5, *[0.0] * 26])).item() == near(0.3)
    assert ant(rows([1.1, *[0.0] * 26])).item() == near(-0.1)
    assert termination.margin_of(ended_above_one) is None  # a user rule without one


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_the_margin_has_the_rules_sign(env_id) -> None:
    # near every bound: the rule ends exactly where the margin is <= 0 (Hopper, Walker2d:
    # open bounds) or < 0 (Ant: closed bounds)
    dims = {"Hopper-v5": 11, "Walker2d-v5": 17, "Ant-v5": 27}[env_id]
    torch.manual_seed(0)
    obs = torch.randn(4000, dims) * 0.3
    obs[:, 0] = torch.empty(4000).uniform_(0.0, 2.5)
    rule = termination.rule_for(env_id)
    margin = termination.margin_of(rule)(obs)
    ended = rule(obs)
    assert 0 < ended.sum() < 4000
    assert torch.equal(ended, margin < 0 if env_id == "Ant-v5" else margin <= 0)


def test_smoothed_continue_keeps_the_mask_and_takes_the_sigmoids_gradient() -> None:
    # Hopper, width 0.01: the angle 0.19 is 0.01 inside its bound 0.2 (mask 1), 0.21 is 0.01
    # past it (mask 0); d mask / d angle = -s(1 - s) / 0.01 with s = sigmoid(+-1), so
    # -0.19661 / 0.01 on both sides; nothing else is within reach of a bound.
    rule = termination.rule_for("Hopper-v5")
    margin = termination.margin_of(rule)
    obs = rows(
        [1.25, 0.19, *[0.0] * 9],
        [1.25, 0.21, *[0.0] * 9],
        [1.25, 0.0, *[0.0] * 9],  # 0.2 from every bound: a vanishing gradient
    ).requires_grad_(True)
    hard = (~rule(obs.detach())).float()
    smoothed = termination.smoothed_continue(hard, obs, margin, 0.01)
    assert torch.equal(smoothed.detach(), torch.tensor([1.0, 0.0, 1.0]))
    smoothed.sum().backward()
    slope = math.exp(-1.0) / (1.0 + math.exp(-1.0)) ** 2 / 0.01
    assert obs.grad[0, 1].item() == pytest.approx(-slope, rel=1e-5)
    assert obs.grad[1, 1].item() == pytest.approx(-slope, rel=1e-5)
    assert obs.grad[:2, [0, *range(2, 11)]].abs().max() == 0.0
    assert obs.grad[2].abs().max() < 1e-6


class _AboveOne:
    """A user rule carrying its margin: ends where the first entry exceeds 1."""

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0] > 1.0

    def margin(self, obs: torch.Tensor) -> torch.Tensor:
        return 1.0 - obs[:, 0]


def test_termination_gradient_width_changes_eq6s_gradient_only() -> None:
    # Same draws with and without the smoothing: every term's value is equal (the mask's
    # value does not change); Eq. 6's gradient into q_phi moves, Eq. 4's into psi does not.
    def run(width):
        torch.manual_seed(0)
        nets = tiny_nets(termination="known", termination_rule=_AboveOne())
        torch.manual_seed(1)
        batch = random_batch(32)
        terms, _ = update_terms(
            nets, batch, UpdateSpec(horizon=3, termination_gradient_width=width)
        )
        terms["return"].mean().backward(retain_graph=True)
        posterior = torch.cat([p.grad.flatten() for p in nets.posterior.parameters()])
        nets.zero_grad()
        (terms["value_mean"].mean() + terms["value_sigma"].mean()).backward()
        value = torch.cat([p.grad.flatten() for p in nets.value.parameters()])
        return terms, posterior, value

    terms, posterior, value = run(0.0)
    smoothed_terms, smoothed_posterior, smoothed_value = run(0.5)
    for name in terms:
        assert torch.equal(terms[name], smoothed_terms[name]), name
    assert not torch.allclose(posterior, smoothed_posterior)
    assert torch.equal(value, smoothed_value)


def test_termination_gradient_width_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="termination_gradient_width"):
        UpdateSpec(termination_gradient_width=-0.1)


# --- masks after a fall, by hand ----------------------------------------------------------------


def test_a_known_fall_masks_everything_after_it() -> None:
    """Toy dynamics s' = s + 1, reward r = s' (the new state), value mu = 10 s, sigma 1;
    the rule ends an episode when s' > 2. From s_0 = 0.5, gamma 0.5, H 4:
    s_1 = 1.5 (live, r 1.5), s_2 = 2.5 (falls: its reward 2.5 counts), then nothing.
    m = 1.5 + 0.5 * 2.5 = 2.75 exactly: no reward of steps 3, 4 and no bootstrap; v = 0.
    From s_0 = -3: s = -2, -1, 0, 1 all live: m = -2 - 0.5 - 0 + 0.125 + 0.0625 * 10 = -1.75,
    v = 0.0625^2."""

    def model_step(obs, action):
        next_obs = obs + 1.0
        rule = lambda o: o[:, 0] > 2.0
        return next_obs, next_obs[:, 0], (~rule(next_obs)).float()

    m, v = imagine(
        rows([0.5], [-3.0]),
        None,
        horizon=4,
        num_samples=1,
        gamma=0.5,
        model_step=model_step,
        policy=lambda obs: torch.zeros(obs.shape[0], 1),
        value=lambda obs, action: (10.0 * obs[:, 0], torch.ones(obs.shape[0])),
    )
    assert torch.allclose(m, torch.tensor([[2.75, -1.75]]))
    assert torch.allclose(v, torch.tensor([[0.0, 0.0625**2]]))


def test_ensemble_step_reads_the_rule_not_the_head() -> None:
    nets = tiny_nets(termination="known", termination_rule=ended_above_one)
    assert not nets.model.learn_termination
    params = nets.model.layer_params(nets.model.elite_idx, frozen=True)
    obs = torch.randn(64, 3)
    next_obs, _, continue_prob = ensemble_step(
        nets.model, params, lambda o: o, obs, torch.zeros(64, 2), None, None, ended_above_one
    )
    assert torch.equal(continue_prob, (next_obs[:, 0] <= 1.0).float())


def test_distribution_rollouts_keep_only_live_states() -> None:
    """s' = s + 1 from s_0 = 0, 1, 2, 3 with the rule s' > 2, H 3: start states all kept;
    step 1 keeps 1, 2 (3, 4 fell); step 2 keeps 2; step 3 keeps none."""

    def model_step(obs, action):
        next_obs = obs + 1.0
        return next_obs, torch.zeros(obs.shape[0]), (~ended_above_two(next_obs)).float()

    def ended_above_two(o):
        return o[:, 0] > 2.0

    states = distribution_rollout(
        rows([0.0], [1.0], [2.0], [3.0]),
        horizon=3,
        model_step=model_step,
        policy=lambda obs: torch.zeros(obs.shape[0], 1),
    )
    assert states[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 1.0, 2.0, 2.0]


def test_distribution_rollout_states_through_the_networks_obey_the_rule() -> None:
    torch.manual_seed(0)
    nets = tiny_nets(termination="known", termination_rule=ended_above_one)
    start = torch.randn(128, 3).clamp(max=0.9)  # live starts
    states = distribution_rollout_states(nets, start, UpdateSpec(distribution_rollout_horizon=5))
    imagined = states[128:]
    assert imagined.shape[0] > 0
    assert not ended_above_one(imagined).any()


def test_update_with_a_known_rule_fits_no_termination_head() -> None:
    torch.manual_seed(0)
    nets = tiny_nets(termination="known", termination_rule=ended_above_one)
    terms, _ = update_terms(nets, random_batch(), UpdateSpec(horizon=3))
    assert "termination" not in terms
    learned = tiny_nets(termination="learned")
    terms, _ = update_terms(learned, random_batch(), UpdateSpec(horizon=3))
    assert "termination" in terms


# --- agreement with the envs ----------------------------------------------------------------------

AGREEMENT_STEPS = 10_000


def _agreement(env_id: str, env_config: dict, seed: int = 0) -> dict[str, int]:
    """Step the env for AGREEMENT_STEPS transitions under random and perturbed policies and
    count where the rule on the next observation and the env's `terminated` disagree."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(env_id, **env_config)
    rule = termination.rule_for(env_id, env_config)
    rng = np.random.default_rng(seed)
    counts = {"transitions": 0, "terminated": 0, "agree": 0, "unobservable": 0, "other": 0}
    obs, _ = env.reset(seed=seed)
    # Alternate a uniform policy with a biased one (a fixed action plus noise), which falls
    # sooner and further.
    bias = rng.uniform(-1, 1, env.action_space.shape)
    while counts["transitions"] < AGREEMENT_STEPS:
        if (counts["transitions"] // 500) % 2:
            action = np.clip(bias + 0.3 * rng.standard_normal(bias.shape), -1, 1)
        else:
            action = env.action_space.sample()
        obs, _, terminated, truncated, _ = env.step(action.astype(np.float32))
        verdict = bool(rule(torch.as_tensor(obs, dtype=torch.float32)[None]).item())
        counts["transitions"] += 1
        counts["terminated"] += terminated
        if verdict == terminated:
            counts["agree"] += 1
        elif terminated and env_id.startswith("Hopper") and _hopper_velocity_fall(env):
            counts["unobservable"] += 1
        else:
            counts["other"] += 1
        if terminated or truncated:
            obs, _ = env.reset()
            bias = rng.uniform(-1, 1, env.action_space.shape)
    env.close()
    return counts


def _hopper_velocity_fall(env) -> bool:
    """Hopper-v5 ended on a velocity outside healthy_state_range, which its observation
    (velocities clipped to [-10, 10]) cannot show."""
    import numpy as np

    unwrapped = env.unwrapped
    low, high = unwrapped._healthy_state_range
    z, angle = unwrapped.data.qpos[1:3]
    z_low, z_high = unwrapped._healthy_z_range
    a_low, a_high = unwrapped._healthy_angle_range
    qpos_ok = np.all((unwrapped.data.qpos[2:] > low) & (unwrapped.data.qpos[2:] < high))
    observable_ok = z_low < z < z_high and a_low < angle < a_high and qpos_ok
    return bool(observable_ok and np.any(np.abs(unwrapped.data.qvel) >= high))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_id", "env_config"),
    [
        ("Hopper-v5", {}),
        ("Walker2d-v5", {}),
        ("Ant-v5", {"include_cfrc_ext_in_observation": False}),
        ("Ant-v5", {}),
    ],
)
def test_the_rule_agrees_with_the_env_on_real_transitions(env_id, env_config) -> None:
    pytest.importorskip("mujoco")
    counts = _agreement(env_id, env_config)
    assert counts["transitions"] == AGREEMENT_STEPS
    assert counts["terminated"] >= 20, counts  # the test saw falls
    # Every disagreement is one the observation cannot show (Hopper's clipped velocities).
    assert counts["other"] == 0, counts
    assert counts["agree"] + counts["unobservable"] == AGREEMENT_STEPS
    print(env_id, counts)


# --- the return range of a task that can end ------------------------------------------------------


def test_return_range_spans_zero_where_rollouts_can_end() -> None:
    """Rewards in [0.8, 1.5] with gamma 0.99: survival alone gives [80, 150]; a task that can
    fall spans [0, 150] (a fall right away is worth 0.8 + 0 after it)."""
    from drive_rllib.core.networks import ReturnRange

    survival, falls = ReturnRange(), ReturnRange(includes_zero=True)
    for return_range in (survival, falls):
        return_range.update(torch.tensor(0.8), torch.tensor(1.5), 0.99, 1.0)
    assert torch.allclose(torch.stack([survival.low, survival.high]), torch.tensor([80.0, 150.0]))
    assert torch.allclose(torch.stack([falls.low, falls.high]), torch.tensor([0.0, 150.0]))
    # A terminated transition's target (its reward, 1.0) is kept, not clipped up to 80.
    assert falls.clip(torch.tensor([1.0])).item() == pytest.approx(1.0)
    assert survival.clip(torch.tensor([1.0])).item() == pytest.approx(80.0)
    # Negative rewards: the range already spans 0 below; 0 caps it from above.
    falls.update(torch.tensor(-3.0), torch.tensor(-1.0), 0.5, 1.0)
    assert torch.allclose(torch.stack([falls.low, falls.high]), torch.tensor([-6.0, 0.0]))


def test_networks_span_zero_only_where_rollouts_can_end() -> None:
    assert tiny_nets(termination="learned").return_range.includes_zero
    assert tiny_nets(
        termination="known", termination_rule=ended_above_one
    ).return_range.includes_zero
    assert not tiny_nets(termination="none").return_range.includes_zero
    off = tiny_nets(termination="learned", return_range_absorbing=False)
    assert not off.return_range.includes_zero
