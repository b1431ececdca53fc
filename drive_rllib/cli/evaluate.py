"""`rllib evaluate CHECKPOINT`: prints and saves what `drive_rllib.algorithm.evaluation` measured.

The deterministic policy's returns, and next to each the predicted
p_psi(U | s0, a0) = N(mu, sigma^2) of the discounted return. The numbers are
saved as ``evaluation.json`` inside the checkpoint folder, where `rllib plot`
finds them; ``--render`` writes the first episode as a video.
"""

from __future__ import annotations

import json
import os
from typing import Any

from drive_rllib.cli.experiments import ALGORITHM, CLIError
from drive_rllib.cli.results import EVALUATION_FILE

#: Episodes listed one per line (more are summarised only).
MAX_EPISODE_LINES = 20


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


def _write_video(path: str, frames: list[Any], fps: float) -> None:
    import imageio

    if path.lower().endswith(".gif"):
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    else:
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)


def report(result: Any) -> tuple[list[str], dict[str, Any]]:
    """The printed lines and the JSON document of an `EvaluationResult`."""
    outcomes = result.episodes
    document = result.summary()
    returns = [o.episode_return for o in outcomes]
    lengths = [o.length for o in outcomes]
    n = len(outcomes)
    lines = [
        f"Checkpoint {result.checkpoint}",
        (
            f"{n} episode{'s' if n > 1 else ''} of {result.env_id}, deterministic policy "
            f"({result.policy} mean action), seeds "
            f"{outcomes[0].seed}..{outcomes[-1].seed}"
        ),
        f"return          {document['return_mean']:.1f} ± {document['return_std']:.1f}   (min {min(returns):.1f}, max {max(returns):.1f})",
        (
            f"episode length  {document['length_mean']:.1f} ± {document['length_std']:.1f}   "
            f"(min {min(lengths)}, max {max(lengths)}; "
            f"{sum(o.terminated for o in outcomes)} terminated)"
        ),
        f"value at s0: predicted p_psi(U|s0,a0) = N(mu, sigma^2) vs the discounted return obtained (gamma {result.gamma:g})",
    ]
    if n <= MAX_EPISODE_LINES:
        lines.append("  seed    predicted mu ± sigma    obtained        z")
        for outcome in outcomes:
            lines.append(
                f"  {outcome.seed:<6d}  {outcome.predicted_mean:10.2f} ± {outcome.predicted_sigma:<8.2f}  "
                f"{outcome.discounted_return:10.2f}  {outcome.z_score:+7.2f}"
            )
    lines.append(
        f"  mean    {document['predicted_mean']:10.2f} ± {document['predicted_sigma']:<8.2f}  "
        f"{document['discounted_return_mean']:10.2f} ± {document['discounted_return_std']:.2f}"
        f"   |z| <= 1: {document['within_1_sigma']}/{n}, |z| <= 2: {document['within_2_sigma']}/{n}"
    )
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
    from drive_rllib.algorithm.evaluation import (
        EnvMismatchError,
        EvaluationError,
        RenderError,
        prepare_evaluation,
        resolve_checkpoint,
        run_evaluation,
    )
    from drive_rllib.cli.train import ray_session

    try:
        checkpoint = resolve_checkpoint(checkpoint)
        check_render_target(render)
        # A checkpoint, config or env that cannot be used fails here, before Ray starts.
        setup = prepare_evaluation(checkpoint, env, quiet=not verbose)
    except EnvMismatchError as error:
        raise CLIError(f"--env {error}") from None
    except EvaluationError as error:
        raise CLIError(str(error)) from None
    with ray_session(ray_address, verbose):
        try:
            result = run_evaluation(setup, episodes, seed, render=render is not None)
        except RenderError as error:
            raise CLIError(f"--render: {error}") from None
    if render is not None:
        _write_video(render, result.frames, result.fps)

    lines, document = report(result)
    target = os.path.join(result.checkpoint, EVALUATION_FILE)
    with open(target, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
    lines.append(f"Saved {target}")
    if render is not None:
        lines.append(f"Video of the first episode: {os.path.abspath(render)}")
    print("\n".join(lines), flush=True)
    return 0
