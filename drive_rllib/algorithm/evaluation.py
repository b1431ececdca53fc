"""The deterministic policy of a DRIVE checkpoint, and what the value distribution predicted.

For every episode the start state s0 and the deterministic action a0 give
p_psi(U | s0, a0) = N(mu, sigma^2), the predicted law of the discounted
return; it is recorded next to the discounted return the episode obtained
(and the undiscounted return, the usual score).

    from drive_rllib.algorithm import evaluate_checkpoint

    result = evaluate_checkpoint("runs/drive-debug/DRIVE_.../checkpoint_000002", episodes=5)
    print(result.summary()["return_mean"])

`evaluate_checkpoint` needs Ray (it starts a private local instance when
none is connected). `prepare_evaluation` does every check that needs no Ray
(the checkpoint, its config, the env), `run_evaluation` the episodes; the
``rllib evaluate`` command calls them in that order, around its own Ray
session, and does the printing and file writing.
"""

from __future__ import annotations

import glob
import os
import pickle
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.utils.spaces.space_utils import unsquash_action

from drive_rllib.algorithm.checkpoint import checkpoint_problem, read_marker
from drive_rllib.algorithm.config import register_module_env
from drive_rllib.algorithm.drive import DRIVE, register
from drive_rllib.algorithm.rl_module import DRIVETorchRLModule
from drive_rllib.core.spec import InferencePolicy

#: The file that marks an RLlib checkpoint folder.
CHECKPOINT_MARKER = "rllib_checkpoint.json"


class EvaluationError(ValueError):
    """The checkpoint, its env or the renderer cannot be used (the message says why)."""


class RenderError(EvaluationError):
    """The env could not render the frames of the filmed episode."""


class EnvMismatchError(EvaluationError):
    """The env asked for gives other observations or takes other actions than the trained one."""


#: Central intervals of N(mu, sigma^2) whose coverage `coverage_table` reports, and the
#: half-widths in sigmas of each (the normal quantiles 0.75, 0.9, 0.975).
COVERAGE_LEVELS = {0.5: 0.6744897501960817, 0.8: 1.2815515655446004, 0.95: 1.959963984540054}
#: Candidate actions drawn from pi_theta per step with ``act="risk"`` (plus its mean).
RISK_CANDIDATES = 16


@dataclass
class Acting:
    """How evaluation acts: ``policy="mean"`` (the deterministic mean action) or
    ``"risk"`` (the candidate a maximising mu - K sigma of p_psi(U | s, a) among the
    mean action and `RISK_CANDIDATES` samples of pi_theta); ``risk`` is K."""

    policy: str = "mean"
    risk: float = 0.0


@dataclass
class CalibrationPoint:
    """p_psi(U | s_t, a_t) at one visited (s, a) and the discounted return realised from
    there (a time-limit truncation is bootstrapped with the prediction at the last state)."""

    episode: int
    t: int
    predicted_mean: float
    predicted_sigma: float
    realised: float


@dataclass
class EpisodeOutcome:
    """One evaluation episode."""

    seed: int
    episode_return: float
    discounted_return: float
    length: int
    terminated: bool
    predicted_mean: float  # mu of p_psi(U | s0, a0)
    predicted_sigma: float  # sigma of p_psi(U | s0, a0)

    @property
    def z_score(self) -> float:
        """(discounted return - mu) / sigma: where the return fell in the predicted law."""
        return (self.discounted_return - self.predicted_mean) / self.predicted_sigma

    def risk_score(self, risk: float) -> float:
        """mu - K sigma of p_psi(U | s0, a0): a lower quantile of the predicted return."""
        return self.predicted_mean - risk * self.predicted_sigma


def coverage_table(points: list[CalibrationPoint]) -> dict[str, Any]:
    """How often the realised return fell inside the predicted central intervals.

    A calibrated p_psi covers about 50 / 80 / 95 % with its 50 / 80 / 95 % intervals;
    less means it is over-confident (sigma too small), more under-confident.
    """
    z = np.array([(p.realised - p.predicted_mean) / p.predicted_sigma for p in points])
    return {
        "points": len(points),
        "coverage": {
            f"{level:.0%}": float(np.mean(np.abs(z) <= half_width)) if len(z) else float("nan")
            for level, half_width in COVERAGE_LEVELS.items()
        },
        "mean_z": float(z.mean()) if len(z) else float("nan"),
        "mean_z_squared": float((z**2).mean()) if len(z) else float("nan"),
    }


@dataclass
class EvaluationSetup:
    """A checked checkpoint, ready to evaluate (`prepare_evaluation`)."""

    checkpoint: str
    config: AlgorithmConfig  # one local Learner, no remote or evaluation EnvRunners
    env_id: str
    env_config: dict[str, Any]
    gamma: float
    policy: str  # "pi_theta" or "q_phi": the policy whose mean action acts


@dataclass
class EvaluationResult:
    """The episodes of one evaluation (`run_evaluation`)."""

    checkpoint: str
    env_id: str
    gamma: float
    policy: str
    episodes: list[EpisodeOutcome]
    #: The first episode's frames (with ``render=True``), and their rate.
    frames: list[np.ndarray] = field(default_factory=list)
    fps: float = 30.0
    acting: Acting = field(default_factory=Acting)
    #: Every visited (s, a) of every episode (with ``calibration=True``).
    calibration: list[CalibrationPoint] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Means and spreads of returns and lengths, the calibration of p_psi, every episode
        (the document `rllib evaluate` saves as ``evaluation.json``)."""
        outcomes = self.episodes
        return_mean, return_std = _mean_std([o.episode_return for o in outcomes])
        length_mean, length_std = _mean_std([float(o.length) for o in outcomes])
        discounted_mean, discounted_std = _mean_std([o.discounted_return for o in outcomes])
        return {
            "checkpoint": self.checkpoint,
            "env": self.env_id,
            "gamma": self.gamma,
            "policy": self.policy,
            "episodes": len(outcomes),
            "return_mean": return_mean,
            "return_std": return_std,
            "length_mean": length_mean,
            "length_std": length_std,
            "discounted_return_mean": discounted_mean,
            "discounted_return_std": discounted_std,
            "predicted_mean": statistics.fmean(o.predicted_mean for o in outcomes),
            "predicted_sigma": statistics.fmean(o.predicted_sigma for o in outcomes),
            "within_1_sigma": sum(abs(o.z_score) <= 1 for o in outcomes),
            "within_2_sigma": sum(abs(o.z_score) <= 2 for o in outcomes),
            "acting": asdict(self.acting),
            "risk": self.acting.risk,
            "risk_score_mean": statistics.fmean(o.risk_score(self.acting.risk) for o in outcomes),
            "per_episode": [
                asdict(outcome) | {"risk_score": outcome.risk_score(self.acting.risk)}
                for outcome in outcomes
            ],
        } | ({"calibration": coverage_table(self.calibration)} if self.calibration else {})


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


# --- checks that need no Ray ------------------------------------------------------------------


def resolve_checkpoint(path: str) -> str:
    """The checkpoint folder: ``path`` itself, or the last ``checkpoint_*`` in a trial folder."""
    if not os.path.exists(path):
        raise EvaluationError(f"no such checkpoint: {path}")
    path = os.path.abspath(path)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, CHECKPOINT_MARKER)):
        inside = sorted(glob.glob(os.path.join(path, "checkpoint_*")))
        if inside:
            path = inside[-1]
    if not os.path.exists(os.path.join(path, CHECKPOINT_MARKER)):
        raise EvaluationError(
            f"{path} is not an RLlib checkpoint (no {CHECKPOINT_MARKER}); give a "
            "checkpoint_* folder, e.g. the one `rllib train` printed last"
        )
    return path


def stored_config(checkpoint: str) -> tuple[type, Any]:
    """(Algorithm class, its config) as stored in the checkpoint, read without Ray."""
    try:
        with open(os.path.join(checkpoint, Algorithm.CLASS_AND_CTOR_ARGS_FILE_NAME), "rb") as file:
            info = pickle.load(file)
        algorithm_class = info["class"]
        config = info["ctor_args_and_kwargs"][0][0]
    except (
        OSError,
        pickle.UnpicklingError,
        KeyError,
        IndexError,
        AttributeError,
        ImportError,
    ) as error:
        raise EvaluationError(
            f"{checkpoint}: cannot read the algorithm and config it holds ({error})"
        ) from None
    if not (isinstance(algorithm_class, type) and issubclass(algorithm_class, DRIVE)):
        raise EvaluationError(
            f"{checkpoint} holds a {getattr(algorithm_class, '__name__', algorithm_class)} checkpoint, not DRIVE"
        )
    return algorithm_class, config


def evaluation_config(algorithm_class: type, stored: Any) -> AlgorithmConfig:
    """The stored config with one local Learner, no remote EnvRunners, no evaluation
    runners: evaluation acts in this process and needs no more CPUs than it has."""
    if isinstance(stored, AlgorithmConfig):
        config = stored.copy(copy_frozen=False)
    else:
        config = algorithm_class.get_default_config().update_from_dict(stored)
    return (
        config.env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .evaluation(evaluation_interval=None, evaluation_num_env_runners=0)
    )


def make_env(env_id: Any, env_config: dict[str, Any], render_mode: str | None) -> gym.Env:
    """The gymnasium env ``env_id`` (EvaluationError: not an id, or an unknown one)."""
    if not isinstance(env_id, str):
        raise EvaluationError(
            f"rllib evaluate needs a gymnasium env id; the checkpoint's env is {env_id!r}"
        )
    kwargs = dict(env_config or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise EvaluationError(f"unknown env {env_id!r}: {str(error).splitlines()[0]}") from None


def check_spaces(trained: gym.Env, other: gym.Env, env_id: str) -> None:
    """Another env must give the observations and take the actions of the trained one."""
    for what in ("observation_space", "action_space"):
        ours, theirs = getattr(trained, what), getattr(other, what)
        if getattr(ours, "shape", None) != getattr(theirs, "shape", None):
            raise EnvMismatchError(
                f"{env_id}: its {what.replace('_', ' ')} {theirs} does not match the "
                f"checkpoint's {ours}"
            )


def prepare_evaluation(path: str, env: str | None = None, quiet: bool = True) -> EvaluationSetup:
    """Every check of an evaluation that needs no Ray: the checkpoint, its config, the env.

    Args:
        path: a checkpoint folder, or a trial folder (its last checkpoint is used).
        env: a gymnasium env id to evaluate on instead of the checkpoint's (same
            observation and action shapes).
        quiet: set RLlib's log level to ERROR for the evaluation.

    Raises:
        EvaluationError: what cannot be used, and why.
    """
    checkpoint = resolve_checkpoint(path)
    # The weights only: a damaged replay does not stop an evaluation, a damaged weights
    # file is named in one line.
    problem = checkpoint_problem(checkpoint, need_replay=False) if read_marker(checkpoint) else None
    if problem is not None:
        raise EvaluationError(f"checkpoint {checkpoint} cannot be evaluated: {problem}")
    algorithm_class, stored = stored_config(checkpoint)
    config = evaluation_config(algorithm_class, stored)
    if quiet:
        # The Algorithm sets RLlib's log level from its config when it is built.
        config.debugging(log_level="ERROR")
    env_id, env_config = env or config.env, config.env_config
    trained_env = make_env(config.env, env_config, None)
    trained_env.close()
    if env is not None:
        other_env = make_env(env_id, env_config, None)
        other_env.close()
        check_spaces(trained_env, other_env, env_id)
    posterior = config.to_spec().acting.inference_policy is InferencePolicy.POSTERIOR
    return EvaluationSetup(
        checkpoint,
        config,
        env_id,
        env_config,
        float(config.gamma),
        "q_phi" if posterior else "pi_theta",
    )


# --- the episodes -----------------------------------------------------------------------------


def run_evaluation(
    setup: EvaluationSetup,
    episodes: int,
    seed: int,
    render: bool = False,
    acting: Acting | None = None,
    calibration: bool = False,
) -> EvaluationResult:
    """Restores the checkpoint (Ray must be connected) and runs ``episodes`` episodes with
    env seeds ``seed``, ``seed + 1``, ...; with ``render`` the first is filmed; ``acting``
    picks the actions (default: the mean action), ``calibration`` records p_psi at every
    visited (s, a) with the return realised from there."""
    acting = acting or Acting()
    register()
    register_module_env(setup.config.env)
    # Evaluation needs the weights, not the replay (which may be large, or damaged).
    algo = Algorithm.from_checkpoint(setup.checkpoint, config=setup.config, restore_replay=False)
    try:
        # The Learner's module: the EnvRunners' copy holds pi_theta only, not the value net.
        (module,) = [
            result.get()
            for result in algo.learner_group.foreach_learner(
                lambda learner: learner.module[DEFAULT_MODULE_ID].unwrapped()
            )
        ]
        points: list[CalibrationPoint] | None = [] if calibration else None
        outcomes, frames, fps = run_episodes(
            module,
            setup.env_id,
            setup.env_config,
            setup.gamma,
            episodes,
            seed,
            render,
            acting,
            points,
        )
    finally:
        algo.stop()
    return EvaluationResult(
        setup.checkpoint,
        setup.env_id,
        setup.gamma,
        setup.policy,
        outcomes,
        frames,
        fps,
        acting,
        points or [],
    )


def run_episodes(
    module: DRIVETorchRLModule,
    env_id: str,
    env_config: dict[str, Any],
    gamma: float,
    episodes: int,
    seed: int,
    render: bool = False,
    acting: Acting | None = None,
    calibration: list[CalibrationPoint] | None = None,
) -> tuple[list[EpisodeOutcome], list[np.ndarray], float]:
    """Episodes with ``module`` (a full, Learner-side DRIVETorchRLModule).

    Args:
        acting: how actions are chosen (default: the deterministic mean action).
        calibration: when a list, every visited (s, a) is appended to it.

    Returns:
        (one outcome per episode, the first episode's frames when ``render``, their fps).
    """
    acting = acting or Acting()
    generator = torch.Generator().manual_seed(seed)
    outcomes, frames, fps = [], [], 30.0
    for index in range(episodes):
        filming = render and index == 0
        env = make_env(env_id, env_config, "rgb_array" if filming else None)
        try:
            outcomes.append(
                _episode(
                    module,
                    env,
                    gamma,
                    seed + index,
                    frames if filming else None,
                    acting,
                    generator,
                    calibration,
                    index,
                )
            )
            if filming:
                fps = env.metadata.get("render_fps", 30)
        finally:
            env.close()
    return outcomes, frames, fps


def _risk_action(
    module: DRIVETorchRLModule,
    obs: torch.Tensor,
    mean_action: torch.Tensor,
    risk: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Among the mean action and `RISK_CANDIDATES` samples of pi_theta, the one with the
    highest mu - K sigma of p_psi(U | s, a) ([1, A] in [-1, 1])."""
    mean, std = module.nets.prior(module.nets.obs_normalizer(obs))
    noise = torch.randn((RISK_CANDIDATES, mean.shape[-1]), generator=generator)
    candidates = torch.cat([mean_action, torch.tanh(mean + std * noise)], dim=0)
    value_mean, value_sigma = module.predicted_return(obs.expand(len(candidates), -1), candidates)
    return candidates[int(torch.argmax(value_mean - risk * value_sigma))].unsqueeze(0)


def _episode(
    module: DRIVETorchRLModule,
    env: gym.Env,
    gamma: float,
    seed: int,
    frames: list | None,
    acting: Acting | None = None,
    generator: torch.Generator | None = None,
    calibration: list[CalibrationPoint] | None = None,
    index: int = 0,
) -> EpisodeOutcome:
    """One episode; appends every frame to ``frames`` unless it is None, and every visited
    (s, a) to ``calibration`` unless it is None."""
    acting = acting or Acting()
    generator = generator or torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    episode_return, discounted_return, discount, length = 0.0, 0.0, 1.0, 0
    terminated = truncated = False
    predicted_mean = predicted_sigma = float("nan")
    visited: list[tuple[float, float]] = []  # (mu, sigma) of p_psi at each (s_t, a_t)
    rewards: list[float] = []
    while not (terminated or truncated):
        obs_tensor = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
        with torch.no_grad():
            action = module.forward_inference({Columns.OBS: obs_tensor})[Columns.ACTIONS]
            if acting.policy == "risk":
                action = _risk_action(module, obs_tensor, action, acting.risk, generator)
            if length == 0 or calibration is not None:
                # p_psi(U | s_t, a_t), a_t the action taken, in the module's [-1, 1].
                mean, sigma = module.predicted_return(obs_tensor, action)
                visited.append((float(mean[0]), float(sigma[0])))
            if length == 0:
                predicted_mean, predicted_sigma = visited[0]
        env_action = unsquash_action(action[0].numpy(), env.action_space)
        env_action = np.clip(env_action, env.action_space.low, env.action_space.high)
        if frames is not None:
            frames.append(_render(env))
        obs, reward, terminated, truncated, _ = env.step(env_action)
        rewards.append(float(reward))
        episode_return += float(reward)
        discounted_return += discount * float(reward)
        discount *= gamma
        length += 1
    if frames is not None:
        frames.append(_render(env))
    if calibration is not None:
        # Realised discounted return from every t; a time-limit truncation keeps the
        # tail it cut off as the prediction at the last state (terminated: no tail).
        tail = 0.0
        if truncated and not terminated:
            obs_tensor = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
            with torch.no_grad():
                last = module.forward_inference({Columns.OBS: obs_tensor})[Columns.ACTIONS]
                tail = float(module.predicted_return(obs_tensor, last)[0][0])
        realised = []
        for reward in reversed(rewards):
            tail = reward + gamma * tail
            realised.append(tail)
        for t, ((mean, sigma), value) in enumerate(zip(visited, reversed(realised))):
            calibration.append(CalibrationPoint(index, t, mean, sigma, value))
    return EpisodeOutcome(
        seed,
        episode_return,
        discounted_return,
        length,
        bool(terminated),
        predicted_mean,
        predicted_sigma,
    )


def _render(env: gym.Env) -> np.ndarray:
    try:
        return env.render()
    except Exception as error:  # noqa: BLE001 -- any renderer failure gets the same hint
        raise RenderError(
            f"the env could not render offscreen ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); MuJoCo envs need "
            "MUJOCO_GL=egl (libEGL) or MUJOCO_GL=osmesa (libOSMesa), classic-control envs "
            "need pip install 'gymnasium[classic_control]'"
        ) from None


@contextmanager
def _connected_ray() -> Iterator[None]:
    """Ray as it is, or a private local instance (no dashboard) for the duration."""
    if ray.is_initialized():
        yield
        return
    # address="local" never attaches to another Ray cluster on the machine.
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def evaluate_checkpoint(
    path: str,
    episodes: int = 10,
    seed: int = 0,
    *,
    env: str | None = None,
    render: bool = False,
    acting: Acting | None = None,
    calibration: bool = False,
) -> EvaluationResult:
    """Runs the deterministic policy of a DRIVE checkpoint for ``episodes`` episodes.

    Args:
        path: a checkpoint folder, or a trial folder (its last checkpoint is used).
        episodes: episodes to run, >= 1.
        seed: env seed of the first episode (then +1 each).
        env: a gymnasium env id instead of the checkpoint's (same spaces).
        render: keep the first episode's frames (``EvaluationResult.frames``).
        acting: how actions are chosen (default: pi_theta's mean action).
        calibration: record p_psi at every visited (s, a) (``EvaluationResult.calibration``).

    Raises:
        EvaluationError: a bad argument, checkpoint or env, or the env cannot render.
    """
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    setup = prepare_evaluation(path, env)
    with _connected_ray():
        return run_evaluation(setup, episodes, seed, render, acting, calibration)
