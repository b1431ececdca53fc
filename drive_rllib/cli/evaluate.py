"""`rllib evaluate CHECKPOINT`: prints and saves what `drive_rllib.algorithm.evaluation` measured.

The deterministic policy's returns, and next to each the predicted
p_psi(U | s0, a0) = N(mu, sigma^2) of the discounted return. The numbers are
saved inside the checkpoint folder as ``evaluation_<date>-<time>_seed<S>.json`` (one
file per evaluation, none overwritten), where `rllib plot` finds them; ``--render`` writes the first episode as a video.
"""

from __future__ import annotations

import json
import os
from typing import Any

from drive_rllib.cli.experiments import ALGORITHM, CLIError
from drive_rllib.cli.results import new_evaluation_path

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


def write_calibration(result: Any, evaluation_path: str) -> list[str]:
    """calibration_*.csv (every visited (s, a)) and calibration_*.png next to the evaluation
    file (same time and seed in the name); the printed coverage table."""
    import csv

    from drive_rllib.algorithm.evaluation import COVERAGE_LEVELS, coverage_table

    stem = evaluation_path[: -len(".json")].replace("evaluation_", "calibration_", 1)
    points = result.calibration
    with open(f"{stem}.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["episode", "t", "predicted_mean", "predicted_sigma", "realised_return"])
        for p in points:
            writer.writerow([p.episode, p.t, p.predicted_mean, p.predicted_sigma, p.realised])
    table = coverage_table(points)
    lines = [
        (
            f"calibration of p_psi at {table['points']} visited (s, a): realised discounted "
            "return inside the predicted central interval (a calibrated model: about the "
            "nominal share)"
        ),
        "  interval   nominal   covered",
    ]
    for level in COVERAGE_LEVELS:
        lines.append(
            f"  {level:>6.0%}     {level:>6.0%}    {table['coverage'][f'{level:.0%}']:>6.1%}"
        )
    lines.append(
        f"  mean z {table['mean_z']:+.2f}, mean z^2 {table['mean_z_squared']:.2f} "
        "(calibrated: 0 and 1)"
    )
    _calibration_png(points, table, f"{stem}.png")
    lines.append(f"Saved {stem}.csv and {stem}.png")
    return lines


def _calibration_png(points: list[Any], table: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from drive_rllib.algorithm.evaluation import COVERAGE_LEVELS

    mean = np.array([p.predicted_mean for p in points])
    sigma = np.array([p.predicted_sigma for p in points])
    realised = np.array([p.realised for p in points])
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.errorbar(mean, realised, xerr=1.96 * sigma, fmt=".", alpha=0.4, elinewidth=0.5)
    low, high = float(min(mean.min(), realised.min())), float(max(mean.max(), realised.max()))
    left.plot([low, high], [low, high], "k--", linewidth=1)
    left.set_xlabel("predicted mu (bars: 95% interval)")
    left.set_ylabel("realised discounted return")
    left.set_title("p_psi(U|s,a) at every visited (s, a)")
    nominal = list(COVERAGE_LEVELS)
    covered = [table["coverage"][f"{level:.0%}"] for level in nominal]
    right.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    right.plot(nominal, covered, "o-", label="p_psi")
    right.set_xlabel("nominal coverage of the central interval")
    right.set_ylabel("share of realised returns inside")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.legend()
    right.set_title(f"coverage ({table['points']} points)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
            f"{n} episode{'s' if n > 1 else ''} of {result.env_id}, "
            + (
                f"deterministic policy ({result.policy} mean action), seeds "
                if result.acting.policy == "mean"
                else f"risk-sensitive actions (best mu - {result.acting.risk:g} sigma of "
                "p_psi among the mean and samples of pi_theta), seeds "
            )
            + f"{outcomes[0].seed}..{outcomes[-1].seed}"
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
    if result.acting.risk or result.acting.policy == "risk":
        k = result.acting.risk
        lines.append(
            f"risk-sensitive score mu - {k:g} sigma of p_psi at s0: mean "
            f"{document['risk_score_mean']:.2f} (per episode: "
            + ", ".join(f"{o.risk_score(k):.2f}" for o in outcomes[:MAX_EPISODE_LINES])
            + ")"
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
    risk: float | None = None,
    act: str = "mean",
    calibration: bool = False,
) -> int:
    """Runs ``rllib evaluate``; returns the exit status.

    ``algo`` and ``env`` are the old CLI's flags: ``algo`` must be DRIVE, ``env``
    replaces the checkpoint's env id (same observation and action shapes). ``risk``
    (K) adds mu - K sigma of p_psi at the start states; ``act="risk"`` picks actions by
    it; ``calibration`` writes the calibration table, its CSV and PNG.
    """
    if episodes < 1:
        raise CLIError(f"--episodes must be >= 1, got {episodes}")
    if act == "risk" and risk is None:
        raise CLIError("--act risk picks actions by mu - K sigma: give --risk K (e.g. --risk 1)")
    if calibration:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError(
                "--calibration draws calibration_*.png with matplotlib: pip install "
                "'drive-rllib[plot]'"
            ) from None
    if algo is not None and algo != ALGORITHM:
        raise CLIError(f"--algo {algo}: this command evaluates {ALGORITHM} checkpoints only")
    from drive_rllib.algorithm.evaluation import (
        Acting,
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
            result = run_evaluation(
                setup,
                episodes,
                seed,
                render=render is not None,
                acting=Acting(act, risk or 0.0),
                calibration=calibration,
            )
        except RenderError as error:
            raise CLIError(f"--render: {error}") from None
    if render is not None:
        _write_video(render, result.frames, result.fps)

    lines, document = report(result)
    target = new_evaluation_path(result.checkpoint, seed)
    with open(target, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
    lines.append(f"Saved {target}")
    if calibration:
        lines += write_calibration(result, target)
    if render is not None:
        lines.append(f"Video of the first episode: {os.path.abspath(render)}")
    print("\n".join(lines), flush=True)
    return 0
