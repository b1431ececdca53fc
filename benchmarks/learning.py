"""Learning curves of DRIVE (and of RLlib's own SAC, for comparison) on one machine.

    python benchmarks/learning.py --env Pendulum-v1 --seeds 0 1 2
    python benchmarks/learning.py --env Pendulum-v1 --seeds 0 1 2 --algo SAC
    python benchmarks/learning.py --plot runs/learning --out docs/learning.png
    python benchmarks/learning.py --table runs/learning
    python benchmarks/learning.py --env HalfCheetah-v5 --config '{"torch_compile_learner": false}'
    python benchmarks/learning.py --file tuned_examples/drive_hopper.yaml --seeds 0 1 2

Each run trains until ``--max-steps`` env steps (or ``--max-minutes``) and
writes, under ``--root/algo_ENV_sSEED/`` (e.g. ``runs/learning/drive_Hopper-v5_s0/``):

- ``episodes.jsonl``: one line per finished training episode: env_steps,
  wall_s, ret, len, last10 (mean of the last 10 training episodes);
- ``evals.jsonl``: deterministic evaluation returns (RLlib's evaluation
  runners with explore=False: the mean of pi_theta for DRIVE) every
  ``--eval-every`` env steps;
- ``summary.json``: the env steps and wall seconds at which the training
  last10 and (separately) the deterministic evaluation return first reached
  ``--threshold``, the final figures, the machine load.

Which of the two a threshold applies to: Pendulum-v1 episodes last 200 steps,
so the last-10 training mean is the criterion. InvertedPendulum-v5 episodes
last up to 1,000 steps, so ten episodes of return >= 950 alone take >= 9,500
env steps: "950 within 5,000 env steps" can only be met by the deterministic
evaluation return, which is the criterion there.

DRIVE runs the config of a tuned experiment file, read as ``rllib train file``
reads it (`drive_rllib.cli.experiments`): ``--file FILE``, or with ``--env ENV``
the file ``PRESETS`` names for ENV (HalfCheetah-v5's for an env it does not
name). The file's stop criteria are replaced by ``--max-steps`` and
``--max-minutes``, its seed by ``--seeds``, and ``--config`` overrides its
settings; evaluation is this script's. SAC uses RLlib's tuned Pendulum settings
(the same as ``../shared/peers/rllib_sac.py --preset pendulum``). Every run
starts a private Ray instance and shuts it down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

THRESHOLDS = {"Pendulum-v1": -200.0, "InvertedPendulum-v5": 950.0}

TUNED_EXAMPLES = Path(__file__).resolve().parents[1] / "tuned_examples"
#: The tuned experiment file whose config a DRIVE run on each env (``--env``) uses.
PRESETS = {
    "Pendulum-v1": TUNED_EXAMPLES / "drive_pendulum.yaml",
    "InvertedPendulum-v5": TUNED_EXAMPLES / "drive_invertedpendulum.yaml",
    "HalfCheetah-v5": TUNED_EXAMPLES / "drive_halfcheetah.yaml",
    "Hopper-v5": TUNED_EXAMPLES / "drive_hopper.yaml",
    "Walker2d-v5": TUNED_EXAMPLES / "drive_walker2d.yaml",
    "Ant-v5": TUNED_EXAMPLES / "drive_ant.yaml",
}


def drive_config(
    env: str,
    seed: int,
    overrides: dict,
    path: str | Path | None = None,
    env_config: dict | None = None,
):
    """The DRIVEConfig of the experiment file ``path`` (default: ``PRESETS``' file of
    ``env``) on ``env``, with ``seed`` and ``overrides`` (and ``env_config`` in place of
    the file's, when given)."""
    from drive_rllib.algorithm import DRIVEConfig
    from drive_rllib.cli.experiments import file_config

    settings = file_config(str(path or PRESETS.get(env, PRESETS["HalfCheetah-v5"])))
    settings.update(env=env, seed=seed, **overrides)
    if env_config is not None:
        settings["env_config"] = env_config
    return DRIVEConfig().update_from_dict(settings)


def sac_config(env: str, seed: int, overrides: dict):
    """RLlib 2.60 SAC with RLlib's tuned Pendulum settings (as the peers harness)."""
    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from torch import nn

    model = DefaultModelConfig(
        fcnet_hiddens=[256, 256],
        fcnet_activation="relu",
        fcnet_kernel_initializer=nn.init.xavier_uniform_,
        head_fcnet_hiddens=[],
    )
    training = {
        "initial_alpha": 1.001,
        "actor_lr": 2e-4,
        "critic_lr": 8e-4,
        "alpha_lr": 9e-4,
        "lr": None,
        "gamma": 0.99,
        "tau": 0.005,
        "target_entropy": "auto",
        "n_step": (2, 5),
        "num_steps_sampled_before_learning_starts": 256,
        "train_batch_size_per_learner": 256,
        "target_network_update_freq": 1,
        "replay_buffer_config": {
            "type": "PrioritizedEpisodeReplayBuffer",
            "capacity": 100_000,
            "alpha": 1.0,
            "beta": 0.0,
        },
    }
    training.update(overrides)
    return (
        SACConfig()
        .environment(env)
        .training(**training)
        .rl_module(model_config=model)
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .reporting(metrics_num_episodes_for_smoothing=10)
        .debugging(seed=seed)
    )


def run(args: argparse.Namespace, seed: int) -> dict:
    import ray
    import torch

    sys.path.insert(0, str(Path(__file__).parent))  # diagnose.py beside this file

    torch.set_num_threads(args.torch_threads)
    out = Path(args.root) / f"{args.algo.lower()}_{args.env}_s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "episodes_raw.jsonl"
    raw.unlink(missing_ok=True)
    (out / "diagnostics.jsonl").unlink(missing_ok=True)

    def on_episode_end(*, episode, env_runner=None, prev_episode_chunks=None, **_):
        if env_runner is not None and env_runner.config.in_evaluation:
            return
        chunks = list(prev_episode_chunks or [])
        record = {
            "t": time.time(),
            "ret": float(episode.get_return() + sum(c.get_return() for c in chunks)),
            "len": int(len(episode) + sum(len(c) for c in chunks)),
        }
        with open(raw, "a") as f:
            f.write(json.dumps(record) + "\n")

    overrides = json.loads(args.config) if args.config else {}
    if args.algo == "DRIVE":
        env_config = json.loads(args.env_config) if args.env_config else None
        config = drive_config(args.env, seed, overrides, args.file, env_config)
    else:
        config = sac_config(args.env, seed, overrides)
    config = config.callbacks(on_episode_end=on_episode_end)
    # A huge interval creates the evaluation runner without evaluating on its own;
    # the loop below calls algo.evaluate() every --eval-every env steps.
    config = config.evaluation(
        evaluation_interval=10**9,
        evaluation_duration=args.eval_episodes,
        evaluation_duration_unit="episodes",
        evaluation_num_env_runners=0,
    )
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    if args.algo == "DRIVE":
        from drive_rllib.algorithm import register

        register()
    algo = config.build_algo()
    threshold = args.threshold if args.threshold is not None else THRESHOLDS.get(args.env)
    start, steps, returns, seen, crossed = time.time(), 0, [], 0, None
    next_eval, eval_crossed = 0, None
    with (
        open(out / "episodes.jsonl", "w") as episodes_file,
        open(out / "evals.jsonl", "w") as evals_file,
    ):
        while True:
            result = algo.train()
            lines = raw.read_text().splitlines()[seen:] if raw.exists() else []
            seen += len(lines)
            for line in lines:
                episode = json.loads(line)
                steps += episode["len"]
                returns.append(episode["ret"])
                last10 = float(np.mean(returns[-10:])) if len(returns) >= 10 else None
                record = {
                    "env_steps": steps,
                    "wall_s": round(episode["t"] - start, 2),
                    "ret": episode["ret"],
                    "len": episode["len"],
                    "last10": last10,
                }
                episodes_file.write(json.dumps(record) + "\n")
                if (
                    crossed is None
                    and threshold is not None
                    and last10 is not None
                    and last10 >= threshold
                ):
                    crossed = record
            episodes_file.flush()
            sampled = result["env_runners"].get("num_env_steps_sampled_lifetime", 0)
            evaluation = {}
            if sampled >= next_eval or sampled >= args.max_steps:
                eval_start = time.time()
                evaluation = algo.evaluate().get("env_runners", {})
                record = {
                    "env_steps": sampled,
                    "wall_s": round(eval_start - start, 2),
                    "eval_return": evaluation.get("episode_return_mean"),
                }
                evals_file.write(json.dumps(record) + "\n")
                evals_file.flush()
                if args.algo == "DRIVE" and args.diagnose:
                    from diagnose import diagnose

                    with open(out / "diagnostics.jsonl", "a") as diagnostics_file:
                        diagnostics_file.write(
                            json.dumps(
                                {**record, **diagnose(algo, args.env, 10_000 + int(sampled))}
                            )
                            + "\n"
                        )
                start += time.time() - eval_start  # wall time counts training only
                next_eval = (int(sampled) // args.eval_every + 1) * args.eval_every
                keep_results(args, out, seed)  # partial results survive an interrupted run
                eval_return = evaluation.get("episode_return_mean")
                if (
                    eval_crossed is None
                    and threshold is not None
                    and eval_return is not None
                    and eval_return >= threshold
                ):
                    eval_crossed = {"env_steps": sampled, "wall_s": round(time.time() - start, 2)}
            print(
                f"[{args.algo} {args.env} s{seed}] env_steps={sampled} "
                f"wall={time.time() - start:.0f}s "
                f"last10={np.mean(returns[-10:]) if returns else float('nan'):.1f} "
                f"eval={evaluation.get('episode_return_mean', float('nan')):.1f}",
                flush=True,
            )
            if sampled >= args.max_steps or time.time() - start >= args.max_minutes * 60:
                break
    wall = time.time() - start
    summary = {
        "algo": args.algo,
        "env": args.env,
        "seed": seed,
        "threshold": threshold,
        "config_overrides": overrides,
        "env_config": dict(config.env_config),
        "last10_crossed_at_env_steps": crossed and crossed["env_steps"],
        "last10_crossed_at_wall_s": crossed and crossed["wall_s"],
        "eval_crossed_at_env_steps": eval_crossed and eval_crossed["env_steps"],
        "eval_crossed_at_wall_s": eval_crossed and eval_crossed["wall_s"],
        "final_env_steps": steps,
        "final_last10": float(np.mean(returns[-10:])) if returns else None,
        "wall_s": round(wall, 1),
        "s_per_iteration": round(wall / max(algo.iteration, 1), 3),
        "iterations": algo.iteration,
        "loadavg_end": os.getloadavg(),
        "code": args.code,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    keep_results(args, out, seed)
    if args.checkpoint:
        print(f"checkpoint: {algo.save_to_path(str((out / 'checkpoint').resolve()))}", flush=True)
    print(json.dumps(summary), flush=True)
    algo.stop()
    ray.shutdown()
    return summary


def code_version() -> str | None:
    """The checkout's commit (short hash, "-dirty" with uncommitted changes to the code or
    the tuned examples), so a result file says which code produced it; None outside git."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*arguments: str) -> str:
        done = subprocess.run(
            ["git", *arguments], cwd=root, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "drive_rllib", "benchmarks", "tuned_examples")
    except OSError:
        return None
    return (commit + ("-dirty" if dirty else "")) or None


#: Read when the module is imported, before any run: the code the runs use.
def keep_results(args: argparse.Namespace, out: Path, seed: int) -> None:
    """Copies a run's files to --results/ENV/ALGO_sSEED/ (when --results is given)."""
    if not args.results:
        return
    keep = Path(args.results) / args.env / f"{args.algo}_s{seed}"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "evals.jsonl", "episodes.jsonl", "diagnostics.jsonl"):
        if (out / name).exists():
            shutil.copyfile(out / name, keep / name)


def plot(root: str, out: str) -> None:
    """Return vs env steps per env: episodes (dots), last-10 mean (solid), deterministic eval (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(p for p in Path(root).iterdir() if (p / "episodes.jsonl").exists())
    envs = sorted({p.name.split("_")[1] for p in runs})
    fig, axes = plt.subplots(1, len(envs), figsize=(max(6.5 * len(envs), 9), 4.5), squeeze=False)
    colors = {"drive": plt.cm.Blues, "sac": plt.cm.Oranges}
    for ax, env in zip(axes[0], envs):
        env_runs = [r for r in runs if r.name.split("_")[1] == env]
        for index, run_dir in enumerate(env_runs):
            algo, _, seed = run_dir.name.split("_")
            color = colors.get(algo, plt.cm.Greys)(0.5 + 0.5 * (int(seed[1:]) % 3) / 3)
            rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").open()]
            ax.scatter(
                [r["env_steps"] for r in rows],
                [r["ret"] for r in rows],
                s=4,
                color=color,
                alpha=0.35,
            )
            ax.plot(
                [r["env_steps"] for r in rows if r["last10"] is not None],
                [r["last10"] for r in rows if r["last10"] is not None],
                color=color,
                label=f"{algo.upper()} {seed}",
            )
            evals_path = run_dir / "evals.jsonl"
            evals = [json.loads(line) for line in evals_path.open()] if evals_path.exists() else []
            ax.plot(
                [e["env_steps"] for e in evals],
                [e["eval_return"] for e in evals],
                ls="--",
                marker=".",
                color=color,
            )
        if env in THRESHOLDS:
            ax.axhline(THRESHOLDS[env], color="k", lw=0.8, ls=":")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "dots: training episodes; solid: last-10 training mean; "
        "dashed: deterministic evaluation; dotted: threshold",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def evals_table(run_dirs: list[str]) -> None:
    """A markdown table of the deterministic evaluations of RUN_DIRS, a row per run
    (its ``config_overrides``), a column per evaluation point (ablations side by side)."""
    runs = []
    for run_dir in map(Path, run_dirs):
        evals = [json.loads(line) for line in (run_dir / "evals.jsonl").open()]
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        points = {int(e["env_steps"]): e["eval_return"] for e in evals if e["env_steps"] > 3000}
        runs.append((run_dir, summary.get("config_overrides", {}), points))
    steps = sorted({step for _, _, points in runs for step in points})
    print("| run | overrides | " + " | ".join(f"{step:,}" for step in steps) + " |")
    print("|---|---|" + "---|" * len(steps))
    for run_dir, overrides, points in runs:
        cells = [f"{points[step]:,.0f}" if step in points else "" for step in steps]
        print(f"| {run_dir} | `{json.dumps(overrides)}` | " + " | ".join(cells) + " |")


def table(root: str) -> None:
    """A markdown table of every run's summary.json under ROOT."""
    print(
        "| algo | env | seed | last-10 mean reached threshold at (env steps, s) | "
        "deterministic eval reached threshold at (env steps, s) | final last-10 | "
        "env steps | wall s | s/iteration |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sorted(Path(root).glob("*/summary.json")):
        s = json.loads(path.read_text())

        def at(prefix: str, s: dict = s) -> str:
            steps = s.get(f"{prefix}_crossed_at_env_steps")
            return (
                "not reached"
                if steps is None
                else f"{int(steps):,} ({s[f'{prefix}_crossed_at_wall_s']:.0f})"
            )

        final = s["final_last10"]
        print(
            f"| {s['algo']} | {s['env']} | {s['seed']} | {at('last10')} | {at('eval')} | "
            f"{'n/a' if final is None else f'{final:.1f}'} | {s['final_env_steps']:,} | "
            f"{s['wall_s']:.0f} | {s['s_per_iteration']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument(
        "--file",
        metavar="YAML",
        help="a tuned experiment file (DRIVE): its config and env replace --env's preset",
    )
    parser.add_argument("--algo", default="DRIVE", choices=["DRIVE", "SAC"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument(
        "--config",
        help="JSON overrides of the experiment file's config settings (DRIVE) or of SAC's",
    )
    parser.add_argument(
        "--env-config",
        help="JSON env options in place of the file's env_config (e.g. '{}' for Ant-v5's "
        "default 105-dim observation)",
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--no-diagnose",
        dest="diagnose",
        action="store_false",
        help="skip benchmarks/diagnose.py's measurements at each evaluation",
    )
    parser.add_argument(
        "--checkpoint",
        action="store_true",
        help="save a checkpoint (replay included) in the run folder at the end",
    )
    parser.add_argument(
        "--results",
        metavar="DIR",
        help="also copy each run's files to DIR/ENV/ALGO_sSEED/ (e.g. benchmarks/results)",
    )
    parser.add_argument("--root", default="runs/learning")
    parser.add_argument("--plot", metavar="ROOT", help="plot the runs under ROOT and exit")
    parser.add_argument("--table", metavar="ROOT", help="print a markdown table of ROOT's runs")
    parser.add_argument(
        "--evals", nargs="+", metavar="RUN_DIR", help="print the runs' evaluations side by side"
    )
    parser.add_argument("--out", default="learning.png")
    args = parser.parse_args()
    if args.plot:
        plot(args.plot, args.out)
        return
    if args.table:
        table(args.table)
        return
    if args.evals:
        evals_table(args.evals)
        return
    if args.file:
        from drive_rllib.cli.experiments import file_config

        args.env = file_config(args.file)["env"]
    args.code = code_version()  # once, before the runs: later edits do not relabel them
    for seed in args.seeds:
        run(args, seed)


if __name__ == "__main__":
    main()
