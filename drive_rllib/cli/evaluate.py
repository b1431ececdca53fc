"""`rllib evaluate CHECKPOINT`: the deterministic policy's returns, and what the value
distribution predicted for them.

For every episode the start state s0 and the policy's deterministic action a0
give p_psi(U | s0, a0) = N(mu, sigma^2), the predicted law of the discounted
return; it is printed next to the discounted return the episode obtained (and
the undiscounted return, the usual score). The numbers are saved as
``evaluation.json`` inside the checkpoint folder, where `rllib plot` finds them.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from drive_rllib.cli.experiments import ALGORITHM, CLIError

#: File name of the saved numbers, inside the checkpoint folder.
EVALUATION_FILE = "evaluation.json"
#: Episodes listed one per line (more are summarised only).
MAX_EPISODE_LINES = 20


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


def resolve_checkpoint(path: str) -> str:
    """The checkpoint folder: ``path`` itself, or the last ``checkpoint_*`` in a trial folder."""
    if not os.path.exists(path):
        raise CLIError(f"no such checkpoint: {path}")
    path = os.path.abspath(path)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "rllib_checkpoint.json")):
        inside = sorted(glob.glob(os.path.join(path, "checkpoint_*")))
        if inside:
            path = inside[-1]
    if not os.path.exists(os.path.join(path, "rllib_checkpoint.json")):
        raise CLIError(
            f"{path} is not an RLlib checkpoint (no rllib_checkpoint.json); give a "
            "checkpoint_* folder, e.g. the one `rllib train` printed last"
        )
    return path


def check_render_target(render: str | None) -> None:
    """Fails before any Ray process starts when the video cannot be written."""
    if render is None:
        return
    if not render.lower().endswith((".mp4", ".gif")):
        raise CLIError(f"--render {render}: give a .mp4 (or .gif) file name")
    try:
        import imageio  # noqa: F401

        if render.lower().endswith(".mp4"):
            import imageio_ffmpeg  # noqa: F401
    except ImportError as error:
        raise CLIError(
            f"--render needs a video writer ({error.name} is missing): pip install "
            "'drive-rllib[render]' (or pip install imageio-ffmpeg; a .gif needs neither)"
        ) from None
    folder = os.path.dirname(os.path.abspath(render))
    if not os.path.isdir(folder):
        raise CLIError(f"--render {render}: no such folder {folder}")
    # MuJoCo renders offscreen through EGL here; without a display its default (GLFW) fails.
    os.environ.setdefault("MUJOCO_GL", "egl")


def stored_config(checkpoint: str) -> tuple[type, Any]:
    """(Algorithm class, its config) as stored in the checkpoint, before Ray starts."""
    from ray.rllib.algorithms.algorithm import Algorithm

    from drive_rllib.algorithm import DRIVE

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
        raise CLIError(
            f"{checkpoint}: cannot read the algorithm and config it holds ({error})"
        ) from None
    if not (isinstance(algorithm_class, type) and issubclass(algorithm_class, DRIVE)):
        raise CLIError(
            f"{checkpoint} holds a {getattr(algorithm_class, '__name__', algorithm_class)} checkpoint, not DRIVE"
        )
    return algorithm_class, config


def evaluation_config(algorithm_class: type, stored: Any) -> Any:
    """The stored config with one local Learner, no remote EnvRunners, no evaluation
    runners: evaluation acts in this process and needs no more CPUs than it has."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    if isinstance(stored, AlgorithmConfig):
        config = stored.copy(copy_frozen=False)
    else:
        config = algorithm_class.get_default_config().update_from_dict(stored)
    return (
        config.env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .evaluation(evaluation_interval=None, evaluation_num_env_runners=0)
    )


def make_env(env_id: Any, env_config: dict[str, Any], render_mode: str | None) -> Any:
    import gymnasium as gym

    if not isinstance(env_id, str):
        raise CLIError(
            f"rllib evaluate needs a gymnasium env id; the checkpoint's env is {env_id!r}"
        )
    kwargs = dict(env_config or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise CLIError(f"unknown env {env_id!r}: {str(error).splitlines()[0]}") from None


def run_episodes(
    module: Any,
    env_id: str,
    env_config: dict[str, Any],
    gamma: float,
    episodes: int,
    seed: int,
    render: str | None,
) -> list[EpisodeOutcome]:
    """Deterministic episodes with ``module`` (a full DRIVETorchRLModule); the first is filmed
    when ``render`` names a video file."""
    import numpy as np
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    outcomes = []
    for index in range(episodes):
        filming = render is not None and index == 0
        env = make_env(env_id, env_config, "rgb_array" if filming else None)
        frames = []
        try:
            obs, _ = env.reset(seed=seed + index)
            episode_return, discounted_return, discount, length = 0.0, 0.0, 1.0, 0
            terminated = truncated = False
            first = True
            while not (terminated or truncated):
                obs_tensor = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
                with torch.no_grad():
                    action = module.forward_inference({Columns.OBS: obs_tensor})[Columns.ACTIONS]
                    if first:
                        # p_psi(U | s0, a0), a0 the deterministic action in the module's [-1, 1].
                        mean, sigma = module.predicted_return(obs_tensor, action)
                        predicted_mean, predicted_sigma = float(mean[0]), float(sigma[0])
                        first = False
                env_action = unsquash_action(action[0].numpy(), env.action_space)
                env_action = np.clip(env_action, env.action_space.low, env.action_space.high)
                if filming:
                    frames.append(_render(env))
                obs, reward, terminated, truncated, _ = env.step(env_action)
                episode_return += float(reward)
                discounted_return += discount * float(reward)
                discount *= gamma
                length += 1
            if filming:
                frames.append(_render(env))
                _write_video(render, frames, env.metadata.get("render_fps", 30))
        finally:
            env.close()
        outcomes.append(
            EpisodeOutcome(
                seed + index,
                episode_return,
                discounted_return,
                length,
                bool(terminated),
                predicted_mean,
                predicted_sigma,
            )
        )
    return outcomes


def check_spaces(trained: Any, other: Any, env_id: str) -> None:
    """``--env``'s env must give the observations and take the actions of the trained one."""
    for what in ("observation_space", "action_space"):
        ours, theirs = getattr(trained, what), getattr(other, what)
        if getattr(ours, "shape", None) != getattr(theirs, "shape", None):
            raise CLIError(
                f"--env {env_id}: its {what.replace('_', ' ')} {theirs} does not match the "
                f"checkpoint's {ours}"
            )


def _render(env: Any) -> Any:
    try:
        return env.render()
    except Exception as error:  # noqa: BLE001 -- any renderer failure gets the same hint
        raise CLIError(
            f"--render: the env could not render offscreen ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); MuJoCo envs need "
            "MUJOCO_GL=egl (libEGL) or MUJOCO_GL=osmesa (libOSMesa), classic-control envs "
            "need pip install 'gymnasium[classic_control]'"
        ) from None


def _write_video(path: str, frames: list[Any], fps: float) -> None:
    import imageio

    if path.lower().endswith(".gif"):
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    else:
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def report(
    checkpoint: str, env_id: str, gamma: float, policy: str, outcomes: list[EpisodeOutcome]
) -> tuple[list[str], dict[str, Any]]:
    """The printed lines and the JSON document of an evaluation."""
    returns = [o.episode_return for o in outcomes]
    lengths = [o.length for o in outcomes]
    discounted = [o.discounted_return for o in outcomes]
    return_mean, return_std = _mean_std(returns)
    length_mean, length_std = _mean_std([float(x) for x in lengths])
    discounted_mean, discounted_std = _mean_std(discounted)
    z_scores = [(o.discounted_return - o.predicted_mean) / o.predicted_sigma for o in outcomes]
    within_1 = sum(abs(z) <= 1 for z in z_scores)
    within_2 = sum(abs(z) <= 2 for z in z_scores)
    predicted_mean = statistics.fmean(o.predicted_mean for o in outcomes)
    predicted_sigma = statistics.fmean(o.predicted_sigma for o in outcomes)
    n = len(outcomes)
    lines = [
        f"Checkpoint {checkpoint}",
        (
            f"{n} episode{'s' if n > 1 else ''} of {env_id}, deterministic policy "
            f"({policy} mean action), seeds "
            f"{outcomes[0].seed}..{outcomes[-1].seed}"
        ),
        f"return          {return_mean:.1f} ± {return_std:.1f}   (min {min(returns):.1f}, max {max(returns):.1f})",
        (
            f"episode length  {length_mean:.1f} ± {length_std:.1f}   (min {min(lengths)}, "
            f"max {max(lengths)}; {sum(o.terminated for o in outcomes)} terminated)"
        ),
        f"value at s0: predicted p_psi(U|s0,a0) = N(mu, sigma^2) vs the discounted return obtained (gamma {gamma:g})",
    ]
    if n <= MAX_EPISODE_LINES:
        lines.append("  seed    predicted mu ± sigma    obtained        z")
        for outcome, z in zip(outcomes, z_scores):
            lines.append(
                f"  {outcome.seed:<6d}  {outcome.predicted_mean:10.2f} ± {outcome.predicted_sigma:<8.2f}  "
                f"{outcome.discounted_return:10.2f}  {z:+7.2f}"
            )
    lines.append(
        f"  mean    {predicted_mean:10.2f} ± {predicted_sigma:<8.2f}  {discounted_mean:10.2f} ± {discounted_std:.2f}"
        f"   |z| <= 1: {within_1}/{n}, |z| <= 2: {within_2}/{n}"
    )
    document = {
        "checkpoint": checkpoint,
        "env": env_id,
        "gamma": gamma,
        "policy": policy,
        "episodes": n,
        "return_mean": return_mean,
        "return_std": return_std,
        "length_mean": length_mean,
        "length_std": length_std,
        "discounted_return_mean": discounted_mean,
        "discounted_return_std": discounted_std,
        "predicted_mean": predicted_mean,
        "predicted_sigma": predicted_sigma,
        "within_1_sigma": within_1,
        "within_2_sigma": within_2,
        "per_episode": [asdict(outcome) for outcome in outcomes],
    }
    return lines, document


def evaluate(
    checkpoint: str,
    episodes: int,
    render: str | None,
    seed: int,
    ray_address: str | None = None,
    verbose: bool = False,
    algo: str | None = None,
    env: str | None = None,
) -> int:
    """Runs ``rllib evaluate``; returns the exit status.

    ``algo`` and ``env`` are the old CLI's flags: ``algo`` must be DRIVE, ``env``
    replaces the checkpoint's env id (same observation and action shapes).
    """
    if episodes < 1:
        raise CLIError(f"--episodes must be >= 1, got {episodes}")
    if algo is not None and algo != ALGORITHM:
        raise CLIError(f"--algo {algo}: this command evaluates {ALGORITHM} checkpoints only")
    checkpoint = resolve_checkpoint(checkpoint)
    check_render_target(render)
    algorithm_class, stored = stored_config(checkpoint)
    config = evaluation_config(algorithm_class, stored)
    if not verbose:
        # The Algorithm sets RLlib's log level from its config when it is built.
        config.debugging(log_level="ERROR")
    env_id, env_config, gamma = env or config.env, config.env_config, float(config.gamma)
    # An env that cannot be built, or does not fit the policy, fails before Ray starts.
    trained_env = make_env(config.env, env_config, None)
    trained_env.close()
    if env is not None:
        other_env = make_env(env_id, env_config, None)
        other_env.close()
        check_spaces(trained_env, other_env, env_id)

    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core import DEFAULT_MODULE_ID

    from drive_rllib.algorithm import register
    from drive_rllib.cli.train import ray_session

    with ray_session(ray_address, verbose):
        register()
        algo = Algorithm.from_checkpoint(checkpoint, config=config)
        try:
            # The Learner's module: the EnvRunners' copy holds pi_theta only, not the value net.
            (module,) = [
                result.get()
                for result in algo.learner_group.foreach_learner(
                    lambda learner: learner.module[DEFAULT_MODULE_ID].unwrapped()
                )
            ]
            outcomes = run_episodes(module, env_id, env_config, gamma, episodes, seed, render)
        finally:
            algo.stop()

    policy = "q_phi" if config.inference_policy == "posterior" else "pi_theta"
    lines, document = report(checkpoint, env_id, gamma, policy, outcomes)
    target = os.path.join(checkpoint, EVALUATION_FILE)
    with open(target, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
    lines.append(f"Saved {target}")
    if render is not None:
        lines.append(f"Video of the first episode: {os.path.abspath(render)}")
    print("\n".join(lines), flush=True)
    return 0
