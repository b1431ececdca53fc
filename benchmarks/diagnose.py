"""What a DRIVE run's networks believe, against what the environment does.

``diagnose(algo, env_id, seed)`` takes a built DRIVE Algorithm with a local Learner
(``num_learners=0``, as ``benchmarks/learning.py`` runs it) and measures, from two
real episodes (one with pi_theta sampling, one with its mean action) and one replay
batch:

(a) value calibration: mean over the first 500 steps of p_psi's mu(s_t, a_t) (the
    mixture of the heads) against the Monte-Carlo discounted return actually
    obtained from there, for each episode;
(b) model error against rollout step k = 1..H: the elites' mean predictions rolled
    open-loop along the real actions of the sampling episode, squared error to
    the real states (mean over dims and start points), per elite;
(c) exploitation: the imagined H-step discounted reward under pi_theta from the
    episode's states against the H-step discounted reward that followed them in
    the sampling episode (same policy);
(d) the scale of each Eq. 6 term (-J_U / alpha, J_KL1, J_KL2) on a replay batch and
    the norm of its gradient into q_phi and into pi_theta;
(e) the entropy of pi_theta and the share of action dims in tanh saturation
    (|a| > 0.99) in the two episodes; pi_theta's entropy on replayed states, on the
    last 2,000 rows written (where it acts now) and on the model states Eq. 6 starts
    from, and the entropy floor's weight;
(f) with a learned termination head: its P(terminated) on 8,192 replayed rows, at the
    rows that terminated and at the others; and from every state of the sampling
    episode the imagined probability of a termination within H steps against the
    real share of states that were at most H steps before the episode's end.

    python benchmarks/learning.py --env HalfCheetah-v5 ...   # calls diagnose() at every evaluation
    python benchmarks/diagnose.py --summarise runs/learning/drive_HalfCheetah-v5_s0
    python benchmarks/diagnose.py --plot RUN_DIR [RUN_DIR ...] --out docs/diagnosis.png
    python benchmarks/diagnose.py --checkpoint RUN_DIR/checkpoint

The second form prints the table of the diagnostics.jsonl that learning.py wrote;
the third draws panels (a)-(d) over env steps; the fourth reads a checkpoint with
its replay (``learning.py --checkpoint``) and prints (g) pi_theta's entropy where
the entropy floor acts and where pi_theta acts: on 256 replayed states, on 256 of
the last 2,000 rows written (the states it visits now), on the model-state buffer
(Eq. 6's start states), as the update step measures it, and on a fresh
distribution rollout from replayed states (its start states and the
imagined ones); (g') p_psi at pi_theta's mean action on those last rows and
on 1,024 model states: the heads' mean mu and their spread; and (h) on a task that ends, p_psi's mu at the replayed (s, a)
k = 0, 1, 2, 5, 10, 20, 50 steps before each of the last 8,000 rows' falls
against the discounted reward realised up to the fall; (i) over the last 2,000
rows: mu, Eq. 4's mean target with its horizon 1, 3 and H, and the spread of
psi_bar's heads at (s', a' ~ pi_theta); (j) on a task that ends, whether f_hat
foresees the falls: from the real states k = 5, 10, 20, 50, 100 steps before each
of the last 20 falls, the share of 32 imagined rollouts under pi_theta that have
fallen by the transition on which the real episode fell (the (k + 1)-th) and by ten
transitions later, and the share of 32 rollouts along the real actions that have.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from drive_rllib.core.distributions import (
    aggregate_heads,
    tanh_gaussian_action,
    tanh_gaussian_rsample,
)
from drive_rllib.core.update import imagination, posterior_step, start_states

CALIBRATION_STEPS = 500
TERMINATION_ROWS = 8192
#: The rows pi_theta's entropy "where it acts now" is read on: the last ones written.
RECENT_ROWS = 2000


def _module(algo: Any):
    learner = algo.learner_group._learner
    if learner is None:
        raise RuntimeError("diagnose() needs a local Learner: build the config with num_learners=0")
    return learner.module["default_policy"].unwrapped()


def _episode(nets, env: gym.Env, seed: int, deterministic: bool) -> dict[str, np.ndarray]:
    low, high = env.action_space.low, env.action_space.high
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list] = {"obs": [], "action": [], "reward": []}
    done = False
    while not done:
        with torch.no_grad():
            action = nets.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic)[0]
        action = action.numpy()
        rows["obs"].append(obs)
        rows["action"].append(action)
        obs, reward, terminated, truncated, _ = env.step(low + (action + 1.0) * 0.5 * (high - low))
        rows["reward"].append(reward)
        done = terminated or truncated
    rows["obs"].append(obs)
    episode = {key: np.asarray(value, dtype=np.float32) for key, value in rows.items()}
    episode["terminated"] = np.asarray(terminated)
    return episode


def _discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    returns = np.zeros_like(rewards, dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        returns[t] = acc
    return returns


@torch.no_grad()
def _calibration(nets, episode: dict[str, np.ndarray], gamma: float) -> dict[str, float]:
    steps = min(CALIBRATION_STEPS, len(episode["reward"]))
    obs = torch.as_tensor(episode["obs"][:steps])
    action = torch.as_tensor(episode["action"][:steps])
    heads = nets.value(nets.obs_normalizer(obs), action, nets.value_scale())
    mu, sigma = aggregate_heads(*heads, "mean")
    returns = _discounted_returns(episode["reward"], gamma)[:steps]
    return {
        "predicted_mu": float(mu.mean()),
        "predicted_sigma": float(sigma.mean()),
        "mc_return": float(returns.mean()),
        "episode_return": float(episode["reward"].sum()),
    }


@torch.no_grad()
def _model_error(nets, episode: dict[str, np.ndarray], horizon: int) -> list[list[float]]:
    """[elite][k-1]: squared error of the k-step open-loop mean prediction along real actions."""
    obs = torch.as_tensor(episode["obs"])
    actions = torch.as_tensor(episode["action"])
    starts = torch.arange(0, len(actions) - horizon, 10)
    model = nets.model
    normalize = nets.obs_normalizer.frozen()
    affine = nets.target_affine()
    errors = []
    for elite in model.elite_idx.tolist():
        params = model.layer_params(torch.tensor([elite]), frozen=True)
        state = obs[starts]
        per_step = []
        for k in range(horizon):
            mean, _, _ = model(normalize(state)[None], actions[starts + k][None], params)
            mean = mean[0]
            if affine is not None:
                mean = affine[0] + affine[1] * mean
            state = state + mean[:, :-1]
            per_step.append(float((state - obs[starts + k + 1]).square().mean()))
        errors.append(per_step)
    return errors


@torch.no_grad()
def _imagined_rollout(
    nets, start_obs: np.ndarray, horizon: int, actions: np.ndarray | None = None
) -> tuple[Tensor, Tensor]:
    """H model steps from ``start_obs`` [M, S] through f_hat's elites (a random elite per
    row and step) under pi_theta, or along ``actions`` [H, M, A] when given (open loop):
    the rewards and continue probabilities, each [H, M]."""
    from drive_rllib.core.imagine import ensemble_step

    normalize = nets.obs_normalizer.frozen()
    model = nets.model
    params = model.layer_params(model.elite_idx, frozen=True)
    state = torch.as_tensor(start_obs)
    rewards, continue_probs = [], []
    for step in range(horizon):
        if actions is None:
            action = tanh_gaussian_action(*nets.prior(normalize(state)))
        else:
            action = torch.as_tensor(actions[step])
        state, reward, continue_prob = ensemble_step(
            model,
            params,
            normalize,
            state,
            action,
            None,
            nets.target_affine(),
            nets.termination_rule,
        )
        rewards.append(reward)
        continue_probs.append(continue_prob)
    return torch.stack(rewards), torch.stack(continue_probs)


@torch.no_grad()
def _exploitation(nets, episode: dict[str, np.ndarray], horizon: int, gamma: float) -> dict:
    """Imagined vs real H-step discounted reward from the same states, under pi_theta."""
    rewards = episode["reward"]
    starts = np.arange(0, len(rewards) - horizon, 10)
    discounts = gamma ** np.arange(horizon)
    real = np.array([(rewards[t : t + horizon] * discounts).sum() for t in starts])
    imagined_rewards, _ = _imagined_rollout(nets, episode["obs"][starts], horizon)
    imagined = (
        torch.as_tensor(discounts, dtype=imagined_rewards.dtype)[:, None] * imagined_rewards
    ).sum(0)
    return {"imagined_h_step": float(imagined.mean()), "real_h_step": float(real.mean())}


@torch.no_grad()
def _falls_within_h(nets, episode: dict[str, np.ndarray], horizon: int) -> dict[str, float] | None:
    """From every state of the episode: the imagined probability of a termination within H
    steps under pi_theta (product of f_hat's continue probabilities) against the real share
    of states whose episode terminated at most H steps later (with a known rule: the rule
    on imagined states). None when nothing terminates in imagination."""
    if not nets.model.learn_termination and nets.termination_rule is None:
        return None
    num_steps = len(episode["reward"])
    _, continue_probs = _imagined_rollout(nets, episode["obs"][:num_steps], horizon)
    survival = continue_probs.prod(0)
    real = np.zeros(num_steps, dtype=bool)
    if episode["terminated"]:  # the last transition (index num_steps - 1) terminated
        real[max(0, num_steps - horizon) :] = True
    return {"imagined": float(1.0 - survival.mean()), "real": float(real.mean())}


@torch.no_grad()
def _termination(nets, replay_rows: Callable[[int], dict[str, Tensor]]) -> dict[str, float] | None:
    """f_hat's termination head on ``TERMINATION_ROWS`` replayed real rows (falls are rare:
    about one row in 140 on Hopper): the elites' mean P(terminated) at the rows that did
    terminate (falls) and at the others, and the share of each above 1/2. None when the
    model does not learn termination (and then no rows are fetched)."""
    model = nets.model
    if not model.learn_termination:
        return None
    rows = replay_rows(TERMINATION_ROWS)
    params = model.layer_params(model.elite_idx, frozen=True)
    _, _, logit = model(nets.obs_normalizer(rows["obs"]), rows["action"], params)
    p_fall = torch.sigmoid(logit).mean(0)
    fell = rows["terminated"] > 0.5
    out = {"falls": int(fell.sum()), "rows": int(fell.numel())}
    for name, mask in (("at_falls", fell), ("elsewhere", ~fell)):
        if mask.any():
            out[f"p_fall_{name}"] = float(p_fall[mask].mean())
            out[f"above_half_{name}"] = float((p_fall[mask] > 0.5).float().mean())
    return out


def _eq6_scales(nets, spec, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Batch mean of each Eq. 6 term and the norm of its gradient into q_phi and pi_theta."""
    obs = batch["obs"]
    normalize = nets.obs_normalizer.frozen(obs.dtype)
    shared = imagination(nets, normalize, obs.shape[0], obs.device, spec)
    start = start_states(nets, obs, spec)
    eq6 = posterior_step(nets, start, normalize(start), shared, spec)
    weighted = {
        "return": -eq6.terms["return"].mean() / spec.alpha,
        "kl_prior": eq6.terms["kl_prior"].mean(),
        "kl_value": eq6.terms["kl_value"].mean(),
    }
    out: dict[str, float] = {}
    groups = {
        "posterior": list(nets.posterior.parameters()),
        "prior": list(nets.prior.parameters()),
    }
    for name, term in weighted.items():
        out[f"{name}/value"] = float(term)
        for group, params in groups.items():
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            norm = torch.sqrt(
                sum((g.square().sum() for g in grads if g is not None), torch.zeros(()))
            )
            out[f"{name}/grad_{group}"] = float(norm)
    return out


def diagnose(algo: Any, env_id: str, seed: int) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-able dict."""
    import ray

    module = _module(algo)
    nets, spec = module.nets, module.spec.update
    env = gym.make(env_id, **dict(algo.config.env_config or {}))  # the run's env options
    try:
        sampled = _episode(nets, env, seed, deterministic=False)
        mean_action = _episode(nets, env, seed + 1, deterministic=True)
    finally:
        env.close()

    def replay_rows(count: int) -> dict[str, Tensor]:
        rows = ray.get(algo.replay_actor.sample.remote(count, "train"))
        return {
            key: torch.as_tensor(np.asarray(value), dtype=torch.float32)
            for key, value in rows.items()
        }

    batch = replay_rows(256)
    replay_entropy = _entropy(nets, batch["obs"])
    recent = ray.get(algo.replay_actor.sample_recent.remote(256, RECENT_ROWS))["obs"]
    recent_entropy = _entropy(nets, torch.as_tensor(np.asarray(recent), dtype=torch.float32))
    model_state_entropy = None
    if nets.model_states is not None and int(nets.model_states.size) > 0:
        model_state_entropy = _entropy(nets, nets.model_states.sample(256))
    floor = nets.entropy_floor
    return {
        "calibration_sampled": _calibration(nets, sampled, spec.gamma),
        "calibration_mean_action": _calibration(nets, mean_action, spec.gamma),
        "model_error_by_step": _model_error(nets, sampled, spec.horizon),
        "exploitation": _exploitation(nets, sampled, spec.horizon, spec.gamma),
        "eq6": _eq6_scales(nets, spec, batch),
        "policy_entropy_replay": replay_entropy,
        "policy_entropy_recent": recent_entropy,
        "policy_entropy_model_states": model_state_entropy,
        "entropy_floor_weight": None if floor is None else float(floor.weight),
        "saturation_sampled": float((np.abs(sampled["action"]) > 0.99).mean()),
        "saturation_mean_action": float((np.abs(mean_action["action"]) > 0.99).mean()),
        "return_range": [float(nets.return_range.low), float(nets.return_range.high)],
        "termination": _termination(nets, replay_rows),
        "falls_within_h": _falls_within_h(nets, sampled, spec.horizon),
    }


def read_diagnostics(run_dir: str) -> list[dict[str, Any]]:
    """The records of RUN_DIR/diagnostics.jsonl; if a restarted run appended to an older
    file, only the records of the last run (env steps increase within a run)."""
    rows: list[dict[str, Any]] = []
    for line in (Path(run_dir) / "diagnostics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if rows and record["env_steps"] <= rows[-1]["env_steps"]:
            rows = []
        rows.append(record)
    return rows


def summarise(run_dir: str) -> None:
    """A markdown table of a run's diagnostics.jsonl."""
    print(
        "| env steps | eval return | mu (mean action) | MC return (mean action) | "
        "mu (sampled) | MC return (sampled) | model err k=1 / k=H | imagined / real H-step | "
        "-J_U/alpha, KL1, KL2 | grad q_phi: J_U, KL1, KL2 | saturation |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = read_diagnostics(run_dir)
    for d in rows:
        cm, cs = d["calibration_mean_action"], d["calibration_sampled"]
        err = np.mean(d["model_error_by_step"], axis=0)
        ex, eq6 = d["exploitation"], d["eq6"]
        print(
            f"| {int(d['env_steps']):,} | {d.get('eval_return') or float('nan'):.0f} | "
            f"{cm['predicted_mu']:.0f} | {cm['mc_return']:.0f} | {cs['predicted_mu']:.0f} | "
            f"{cs['mc_return']:.0f} | {err[0]:.2f} / {err[-1]:.2f} | "
            f"{ex['imagined_h_step']:.1f} / {ex['real_h_step']:.1f} | "
            f"{eq6['return/value']:.0f}, {eq6['kl_prior/value']:.2f}, {eq6['kl_value/value']:.2f} | "
            f"{eq6['return/grad_posterior']:.2g}, {eq6['kl_prior/grad_posterior']:.2g}, "
            f"{eq6['kl_value/grad_posterior']:.2g} | {d['saturation_sampled']:.2f} |"
        )
    termination = [d for d in rows if d.get("termination")]
    if termination:
        print(
            "\n| env steps | falls / replayed rows | P(fall) at falls / elsewhere | "
            "share > 1/2 at falls / elsewhere | fall within H: imagined / real |"
        )
        print("|---|---|---|---|---|")
        for d in termination:
            t, f = d["termination"], d["falls_within_h"]
            print(
                f"| {int(d['env_steps']):,} | {t['falls']} / {t['rows']} | "
                f"{t.get('p_fall_at_falls', float('nan')):.2f} / {t['p_fall_elsewhere']:.2f} | "
                f"{t.get('above_half_at_falls', float('nan')):.2f} / "
                f"{t['above_half_elsewhere']:.2f} | {f['imagined']:.2f} / {f['real']:.2f} |"
            )


def plot(run_dirs: list[str], out: str) -> None:
    """Four panels over env steps, one line per run: (a) p_psi's mu against the MC return
    (mean action), (b) the elites' model error against rollout step at the last point,
    (c) imagined against real H-step reward, (d) the Eq. 6 terms' gradient norms into q_phi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    names = [Path(run_dir).name for run_dir in run_dirs]
    for index, run_dir in enumerate(run_dirs):
        rows = read_diagnostics(run_dir)
        # Runs of the same name (e.g. two DRIVE_s0) are told apart by their grandparent folder.
        path = Path(run_dir).resolve()
        label = path.name if names.count(path.name) == 1 else f"{path.parents[1].name}/{path.name}"
        color = f"C{index}"
        steps = [r["env_steps"] for r in rows]
        ax = axes[0]
        ax.plot(
            steps,
            [r["calibration_mean_action"]["predicted_mu"] for r in rows],
            color=color,
            label=f"{label}: mu",
        )
        ax.plot(
            steps,
            [r["calibration_mean_action"]["mc_return"] for r in rows],
            color=color,
            ls="--",
            label=f"{label}: MC return",
        )
        err = np.asarray(rows[-1]["model_error_by_step"])
        axes[1].plot(
            range(1, err.shape[1] + 1),
            err.mean(0),
            color=color,
            marker="o",
            label=f"{label} at {int(steps[-1]):,}",
        )
        axes[2].plot(
            steps,
            [r["exploitation"]["imagined_h_step"] for r in rows],
            color=color,
            label=f"{label}: imagined",
        )
        axes[2].plot(
            steps,
            [r["exploitation"]["real_h_step"] for r in rows],
            color=color,
            ls="--",
            label=f"{label}: real",
        )
        for term, style in (("return", "-"), ("kl_prior", ":"), ("kl_value", "--")):
            axes[3].plot(
                steps,
                [r["eq6"][f"{term}/grad_posterior"] for r in rows],
                color=color,
                ls=style,
                label=f"{label}: {term}",
            )
    axes[0].set_title("(a) p_psi mu vs MC discounted return (mean action, t < 500)")
    axes[1].set_title("(b) open-loop model error (MSE) vs rollout step")
    axes[1].set_yscale("log")
    axes[2].set_title("(c) imagined vs real H-step discounted reward")
    axes[3].set_title("(d) Eq. 6 gradient norm into q_phi")
    axes[3].set_yscale("log")
    for ax in axes:
        ax.legend(fontsize=6)
        ax.set_xlabel("env steps")
    axes[1].set_xlabel("rollout step k")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def from_checkpoint(checkpoint: str, seed: int = 0) -> dict[str, Any]:
    """``--checkpoint``: (g) pi_theta's entropy (-mean log pi of one sample per state) on
    replayed states, on the checkpoint's model-state buffer, as ``update_terms``
    reports it (the floor's states) and along a fresh distribution rollout; (g')
    ``_value_at`` the last rows and the model states; (h)
    ``_before_fall``; (i) ``_targets``; (j) ``_foresight``."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from drive_rllib import keys
    from drive_rllib.core.update import distribution_rollout_states, update_terms

    root = Path(checkpoint)
    module = RLModule.from_checkpoint(root / "learner_group/learner/rl_module/default_policy")
    nets, spec = module.nets, module.spec.update
    replay = np.load(root / "replay.npz")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    def rows(count: int) -> dict[str, Tensor]:
        return _replay_batch(replay, rng.integers(0, int(replay["size"]), count))

    def entropy(states: Tensor) -> float:
        return _entropy(nets, states)

    batch = rows(256)
    back = rng.integers(1, min(RECENT_ROWS, int(replay["size"])) + 1, 256)
    recent = _replay_batch(replay, _written_before(replay, back))["obs"]
    batch["recent_obs"] = recent  # the floor's states under entropy_floor_recent_rows
    out: dict[str, Any] = {"replay": entropy(batch["obs"]), "recent": entropy(recent)}
    if nets.model_states is not None and int(nets.model_states.size) > 0:
        out["model_states"] = entropy(nets.model_states.sample(2048))
        with torch.no_grad():
            _, diagnostics = update_terms(nets, batch, spec)
        out["update_step"] = float(diagnostics[keys.POLICY_ENTROPY])
    if nets.entropy_floor is not None:
        out["floor_weight"] = float(nets.entropy_floor.weight.detach())
        out["floor_target"] = float(nets.entropy_floor.target_entropy)
    value = {"recent": _value_at(nets, recent)}
    if nets.model_states is not None and int(nets.model_states.size) > 0:
        value["model_states"] = _value_at(nets, nets.model_states.sample(1024))
    start = rows(256)["obs"]
    with torch.no_grad():
        states = distribution_rollout_states(nets, start, spec)
    # the first rows are the start states themselves, the rest the imagined live states
    out["rollout_start_states"] = entropy(states[: start.shape[0]])
    out["rollout_imagined_states"] = entropy(states[start.shape[0] :])
    return {
        "entropy": out,
        "value": value,
        "before_fall": _before_fall(nets, replay, spec.gamma),
        "targets": _targets(nets, spec, replay),
        "foresight": _foresight(nets, replay),
    }


def _targets(nets, spec, replay, rows: int = 2_000) -> dict[str, float]:
    """(i): the fixed point of Eq. 4 on the last rows: mu against its target law's mean
    by the target's horizon, and how far psi_bar's heads are apart."""
    import dataclasses

    from drive_rllib.core.update import value_target

    index = _written_before(replay, np.arange(min(rows, int(replay["size"])), 0, -1))
    batch = _replay_batch(replay, index)
    normalize = nets.obs_normalizer.frozen()
    scale = nets.value_scale()
    out = {"mu": float(_mu(nets, batch["obs"], batch["action"]).mean())}
    with torch.no_grad():
        for horizon in sorted({1, 3, spec.horizon}):
            at = dataclasses.replace(spec, value_horizon=horizon)
            shared = imagination(nets, normalize, len(index), torch.device("cpu"), at)
            m, _ = value_target(
                nets, shared, batch["reward"], batch["next_obs"], batch["terminated"], at
            )
            out[f"target_horizon_{horizon}"] = float(m.mean())
        next_n = normalize(batch["next_obs"])
        heads_mu, _ = nets.target_value(next_n, tanh_gaussian_action(*nets.prior(next_n)), scale)
        out["heads_mean"] = float(heads_mu.mean())
        out["heads_spread"] = float(heads_mu.std(0).mean())
    return out


@torch.no_grad()
def _entropy(nets, states: Tensor) -> float:
    """pi_theta's entropy on ``states``: -mean log pi of one sample per state."""
    _, log_prob = tanh_gaussian_rsample(*nets.prior(nets.obs_normalizer(states)))
    return float(-log_prob.mean())


def _written_before(replay, back: np.ndarray) -> np.ndarray:
    """The positions in a ``replay.npz`` of the rows written ``back`` (>= 1) rows before
    its cursor (1: the last row written), across the ring buffer's wrap."""
    return (int(replay["cursor"]) - back) % int(replay["size"])


def _replay_batch(replay, index) -> dict[str, Tensor]:
    """The rows ``index`` of a ``replay.npz`` as float32 tensors (an Eq. 4 batch)."""
    names = ("obs", "action", "reward", "next_obs", "terminated")
    return {k: torch.as_tensor(replay[k][index], dtype=torch.float32) for k in names}


@torch.no_grad()
def _mu(nets, obs: Tensor, action: Tensor) -> Tensor:
    """p_psi's mu at (s, a): the moment-matched mixture of the heads, in return units."""
    heads = nets.value(nets.obs_normalizer(obs), action, nets.value_scale())
    return aggregate_heads(*heads, "mean")[0]


@torch.no_grad()
def _value_at(nets, states: Tensor) -> dict[str, float]:
    """(g') p_psi at (s, pi_theta's mean action) on ``states``: the mean over states of
    the heads' mean mu and of their spread (the heads' standard deviation of mu)."""
    obs_n = nets.obs_normalizer(states)
    action = torch.tanh(nets.prior(obs_n)[0])
    mu, _ = nets.value(obs_n, action, nets.value_scale())  # [K, B]
    spread = mu.std(0) if mu.shape[0] > 1 else torch.zeros_like(mu[0])
    return {"mu": float(mu.mean()), "spread": float(spread.mean())}


def _before_fall(nets, replay, gamma: float, window: int = 8_000) -> dict[int, dict[str, float]]:
    """(h): mu(s, a) of the mixture of heads k steps before a fall, against the discounted
    reward from there to the fall (the true return of those rows: a fall ends it)."""
    reward = replay["reward"][: int(replay["size"])]
    out = {}
    for back in (0, 1, 2, 5, 10, 20, 50):
        rows = _fall_rows(replay, back, window)
        if not rows:
            continue
        batch = _replay_batch(replay, rows)
        mu = _mu(nets, batch["obs"], batch["action"])
        to_fall = [sum(gamma**k * reward[r + k] for k in range(back + 1)) for r in rows]
        out[back] = {
            "rows": len(rows),
            "mu": float(mu.mean()),
            "return_to_fall": float(np.mean(to_fall)),
        }
    return out


def _fall_rows(replay, back: int, window: int = 8_000) -> list[int]:
    """Replayed rows ``back`` steps before a fall among the last ``window`` rows, with no
    episode end between the row and the fall."""
    size = int(replay["size"])
    terminated, truncated = replay["terminated"][:size], replay["truncated"][:size]
    falls = [int(i) for i in np.flatnonzero(terminated > 0) if i >= size - window]
    return [
        f - back
        for f in falls
        if f - back >= 0 and not (terminated[f - back : f].any() or truncated[f - back : f].any())
    ]


@torch.no_grad()
def _foresight(nets, replay, falls: int = 20, samples: int = 32) -> dict[int, dict[str, float]]:
    """(j): does f_hat foresee the falls? From the real states k steps before each of the
    last ``falls`` falls (row k before the falling row: the real episode fell on its
    (k + 1)-th transition), ``samples`` imagined rollouts under pi_theta (the termination
    rule or head on every imagined state): the share that has fallen by that transition
    ("by_fall") and by ten transitions later; and the same from the real actions
    (open loop: f_hat alone, "by_fall_real_actions")."""
    if not nets.model.learn_termination and nets.termination_rule is None:
        return {}
    out = {}
    for back in (5, 10, 20, 50, 100):
        rows = _fall_rows(replay, back)[-falls:]
        if not rows:
            continue
        start = np.repeat(replay["obs"][rows], samples, axis=0).astype(np.float32)
        _, continue_probs = _imagined_rollout(nets, start, back + 11)
        alive = continue_probs.cumprod(0)
        actions = np.stack(
            [replay["action"][rows[i] : rows[i] + back + 1] for i in range(len(rows))]
        )
        real_actions = np.repeat(actions, samples, axis=0).transpose(1, 0, 2)
        _, open_loop = _imagined_rollout(nets, start, back + 1, real_actions.astype(np.float32))
        out[back] = {
            "falls": len(rows),
            "by_fall": float(1.0 - alive[back].mean()),
            "by_fall_plus_10": float(1.0 - alive[back + 10].mean()),
            "by_fall_real_actions": float(1.0 - open_loop.prod(0).mean()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--summarise", metavar="RUN_DIR", help="print the table of RUN_DIR/diagnostics.jsonl"
    )
    parser.add_argument(
        "--plot",
        metavar="RUN_DIR",
        nargs="+",
        help="plot the diagnostics.jsonl of these runs to --out",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="CHECKPOINT",
        help="print (g)-(j) of a checkpoint with its replay",
    )
    parser.add_argument("--out", default="docs/diagnosis.png")
    args = parser.parse_args()
    if args.checkpoint:
        print(json.dumps(from_checkpoint(args.checkpoint), indent=1))
    elif args.plot:
        plot(args.plot, args.out)
    elif args.summarise:
        summarise(args.summarise)
    else:
        parser.error(
            "give --summarise RUN_DIR, --plot RUN_DIR [RUN_DIR ...] or --checkpoint CHECKPOINT"
        )


if __name__ == "__main__":
    main()
