"""The ``rllib`` command of drive-rllib: train, evaluate and plot DRIVE (I/O only).

Ray 2.60 no longer installs an ``rllib`` command; this one keeps the old
conventions::

    rllib train file tuned_examples/drive_halfcheetah.yaml [--stop JSON] [--storage-path DIR]
        [--ray-address ADDR] [--num-samples N] [--checkpoint-freq K] [--resume [--no-replay]]
    rllib train --algo DRIVE --env Pendulum-v1 [--config JSON] [--stop JSON] [...]
    rllib evaluate CHECKPOINT [--episodes N] [--render FILE.mp4]
    rllib plot RUN_DIR [--out FILE.png]
    rllib sweep-report RUN_DIR [--out DIR] [--last K] [--no-plots]
    rllib export-experience CHECKPOINT OUT_DIR [--actions env|normalized]

Bad input (missing or malformed file, unknown run, env, config or stop key, a
discrete action space, a bad value) ends the command with one ``rllib: error:``
line and exit status 2, before any Ray process starts. A failed trial gives
exit status 1, an interrupted run 130: the first Ctrl-C (or SIGTERM) lets every
running trial finish its iteration and write a checkpoint, a second one stops
at once; `rllib train file ... --resume` continues from the newest complete
checkpoint (a `--env` run writes its experiment file, rllib_experiment.yaml,
into its folder for that). Without ``--ray-address`` (or ``RAY_ADDRESS``, which ``ray job
submit`` sets for its driver) every command starts a private local Ray
instance and shuts it down at the end: other Ray clusters on the same machine
are never joined.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from drive_rllib.cli.experiments import EXIT_BAD_INPUT, EXIT_INTERRUPTED, CLIError
from drive_rllib.cli.export import export_experience


def _training_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--stop",
            metavar="JSON",
            help="Stop criteria replacing the experiments', e.g. '{\"num_env_steps_sampled_lifetime\": 20000}'. "
            "Old keys (episode_reward_mean, timesteps_total) are renamed.",
        ),
        click.option(
            "--storage-path",
            metavar="DIR",
            help="Folder of the results (default: the file's storage_path, else ~/ray_results).",
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            envvar="RAY_ADDRESS",
            help="Run on this Ray cluster (default: $RAY_ADDRESS, which `ray job submit` sets) "
            "instead of a private local instance.",
        ),
        click.option(
            "--num-samples",
            type=click.IntRange(min=1),
            metavar="N",
            help="Tune's samples of each experiment's config: repeats of every grid-search "
            "point, e.g. seeds (the experiment-level num_samples; DRIVE's own N is the "
            "config key num_samples).",
        ),
        click.option(
            "--checkpoint-freq",
            type=click.IntRange(min=0),
            metavar="K",
            help="Checkpoint every K iterations (and at the end, unless checkpoint_at_end: false).",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Old RLlib config keys that DRIVE ignores (twin_q, n_step, framework, ...) "
            "are errors instead of notes.",
        ),
        click.option(
            "-v",
            "--verbose",
            is_flag=True,
            help="Also show Tune's trial tables and the trials' own logs.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


#: The extras of drive-rllib and the distribution each adds.
EXTRAS = {"plot": "matplotlib", "render": "imageio-ffmpeg"}


def version_lines() -> list[str]:
    """What ``rllib --version`` prints: drive-rllib and Ray; torch (its CUDA), gymnasium and
    MuJoCo; which extras are installed."""
    from importlib.metadata import PackageNotFoundError, version

    from drive_rllib import __version__

    def installed(distribution: str) -> str | None:
        try:
            return version(distribution)
        except PackageNotFoundError:
            return None

    def named(distribution: str) -> str:
        return f"{distribution} {installed(distribution) or 'not installed'}"

    torch = named("torch")
    if installed("torch"):
        import torch as torch_module

        if torch_module.cuda.is_available():
            torch += (
                f" (CUDA {torch_module.version.cuda}: {torch_module.cuda.device_count()} GPU(s))"
            )
        elif torch_module.version.cuda:
            torch += f" (built for CUDA {torch_module.version.cuda}; no GPU visible: CPU only)"
        else:
            torch += " (CPU only)"
    extras = []
    for extra, distribution in EXTRAS.items():
        found = installed(distribution)
        extras.append(
            f"{extra} ({distribution} {found})"
            if found
            else f"{extra}: not installed (pip install 'drive-rllib[{extra}]')"
        )
    return [
        f"rllib (drive-rllib) {__version__}, {named('ray')}",
        f"{torch}, {named('gymnasium')}, {named('mujoco')}",
        "extras: " + ", ".join(extras),
    ]


def _print_version(context: click.Context, _parameter: click.Parameter, value: bool) -> None:
    if not value or context.resilient_parsing:
        return
    click.echo("\n".join(version_lines()))
    context.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the versions (Ray, torch and its CUDA, gymnasium, MuJoCo, extras) and exit.",
)
def cli() -> None:
    """DRIVE on RLlib: train from experiment files, evaluate checkpoints, plot runs."""


@cli.group(invoke_without_command=True)
@click.option("--algo", default="DRIVE", show_default=True, help="The algorithm (only DRIVE).")
@click.option(
    "--env",
    help="A gymnasium env id with continuous actions, e.g. Pendulum-v1, or module:EnvId "
    "(imports module, which registers EnvId).",
)
@click.option(
    "--config", "config_json", metavar="JSON", help="DRIVEConfig settings, e.g. '{\"horizon\": 5}'."
)
@click.option("--resume", "resume_flag", is_flag=True, hidden=True)
@_training_options
@click.pass_context
def train(
    ctx: click.Context,
    algo: str,
    env: str | None,
    config_json: str | None,
    resume_flag: bool,
    **options: Any,
) -> int | None:
    """Train DRIVE: `rllib train file FILE.yaml` or `rllib train --algo DRIVE --env ENV`.

    Prints one progress line per iteration, then every trial's outcome, the
    best checkpoint and the `rllib evaluate` command for it. Exit status 0 when
    every trial finished, 1 when one failed, 2 on bad input.
    """
    if ctx.invoked_subcommand is not None:
        return None
    from drive_rllib.cli.experiments import (
        check_experiment,
        experiment_from_options,
        option_where,
        parse_json_option,
    )
    from drive_rllib.cli.train import write_experiment_file

    config = parse_json_option("--config", config_json)
    if resume_flag:
        from drive_rllib.cli.train import EXPERIMENT_FILE

        raise CLIError(
            "--resume continues a run from its experiment file: rllib train file "
            f"<storage-path>/<experiment>/{EXPERIMENT_FILE} --resume (the first run printed "
            "the command and wrote the file into its folder)"
        )
    experiment = experiment_from_options(algo, env, config, _overrides(options), _note)
    check_experiment(experiment, option_where)
    _check_local_resources([experiment], options, option_where)
    # The run's own experiment file, so that `rllib train file ... --resume` continues it.
    written = write_experiment_file(experiment)
    resume = (
        None if written is None else shlex.join(["rllib", "train", "file", written, "--resume"])
    )
    return _run([experiment], options, resume_command=resume)


@train.command("file")
@click.argument("file", metavar="FILE.yaml")
@_training_options
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the experiments saved under the storage path (after Ctrl-C or a crash): "
    "unfinished and failed trials resume from their last checkpoint, finished ones are "
    "kept, experiments not started yet start.",
)
@click.option(
    "--no-replay",
    is_flag=True,
    help="With --resume: restore weights and optimizers only and start with an empty "
    "replay (a checkpoint whose replay.npz is damaged or missing then loads too).",
)
def train_file(file: str, resume: bool, no_replay: bool, **options: Any) -> int:
    """Run the experiments of FILE.yaml (old RLlib format: name -> run, env, stop, config).

    In the file, an experiment's own `num_samples` is Tune's (repeats of every grid point,
    e.g. seeds); `config: {num_samples: ...}` is DRIVE's N (imagined samples per state).
    """
    from drive_rllib.cli.experiments import check_experiment, experiments_from_file

    experiments, lines = experiments_from_file(file, _overrides(options), _note)
    for experiment in experiments:
        check_experiment(experiment, lines.where)
    _check_local_resources(experiments, options, lines.where)
    if no_replay and not resume:
        raise CLIError("--no-replay applies to --resume only (a new run starts empty anyway)")
    if resume:
        _check_resume(experiments, options)
    else:
        _note_existing(experiments)
    command = ["rllib", "train", "file", file]
    if options["storage_path"]:
        command += ["--storage-path", options["storage_path"]]
    return _run(experiments, options, resume, shlex.join([*command, "--resume"]), no_replay)


@cli.command()
@click.argument("checkpoint")
@click.option("--episodes", type=int, default=10, show_default=True, help="Evaluation episodes.")
@click.option(
    "--render",
    metavar="FILE.mp4",
    help="Write a video of the first episode (MuJoCo: offscreen via EGL).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Env seed of the first episode (then +1 each).",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    envvar="RAY_ADDRESS",
    help="Use this Ray cluster (default: $RAY_ADDRESS) instead of a private local instance.",
)
@click.option("--algo", help="The old CLI's flag, accepted out of habit: must be DRIVE.")
@click.option(
    "--env",
    help="Evaluate on this gymnasium env id (or module:EnvId) instead of the checkpoint's.",
)
@click.option(
    "--risk",
    type=float,
    metavar="K",
    help="Also report the risk-sensitive score mu - K sigma of p_psi at the start states.",
)
@click.option(
    "--act",
    type=click.Choice(["mean", "risk"]),
    default="mean",
    show_default=True,
    help="mean: pi_theta's mean action; risk: the action with the best mu - K sigma of p_psi "
    "among the mean and 16 samples of pi_theta (needs --risk K).",
)
@click.option(
    "--calibration",
    is_flag=True,
    help="Write calibration_*.csv/.png: predicted N(mu, sigma^2) at every visited (s, a) "
    "against the realised discounted return, with the coverage of the 50/80/95% intervals.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show Ray's and RLlib's own logs.")
def evaluate(
    checkpoint: str,
    episodes: int,
    render: str | None,
    seed: int,
    ray_address: str | None,
    algo: str | None,
    env: str | None,
    risk: float | None,
    act: str,
    calibration: bool,
    verbose: bool,
) -> int:
    """Run the deterministic policy of CHECKPOINT; compare returns with the value's prediction.

    Prints mean ± std return and episode lengths, and per episode the predicted
    p_psi(U|s0,a0) = N(mu, sigma^2) next to the discounted return obtained.
    Saves the numbers as evaluation_<date>-<time>_seed<S>.json inside the checkpoint
    folder, one file per evaluation (read by `rllib plot`). CHECKPOINT may also be a trial folder (its last checkpoint).
    """
    from drive_rllib.cli.evaluate import evaluate as run_evaluation

    return run_evaluation(
        checkpoint, episodes, render, seed, ray_address, verbose, algo, env, risk, act, calibration
    )


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--out", metavar="FILE.png", help="Image file (default: RUN_DIR/drive_plot.png).")
def plot(run_dir: str, out: str | None) -> int:
    """Plot return vs env steps of every trial under RUN_DIR (seeds: mean and min-max band),
    and predicted vs obtained returns of every evaluation file (evaluation*.json) found there."""
    from drive_rllib.cli.plot import plot as draw

    return draw(run_dir, out)


@cli.command("sweep-report")
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--out", metavar="DIR", help="Folder of the report (default: RUN_DIR).")
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Final return = mean of a trial's last K reported training returns.",
)
@click.option("--no-plots", is_flag=True, help="Write the tables only (no matplotlib needed).")
def sweep_report(run_dir: str, out: str | None, last: int, no_plots: bool) -> int:
    """Tables and figures of a sweep over H (horizon) and N (num_samples) under RUN_DIR.

    Writes sweep.md and sweep.csv (one row per (H, N): final return and area-under-curve
    return, mean ± std over seeds, wall time per trial), sweep_trials.csv (one row per
    trial), and with matplotlib heatmap.png, curves_by_H.png, curves_by_N.png and
    wall_time.png. Reads the trial folders offline; starts no Ray.
    """
    from drive_rllib.cli.sweep_report import report

    return report(run_dir, out, last=last, plots=not no_plots)


def _overrides(options: dict[str, Any]) -> Any:
    from drive_rllib.cli.experiments import Overrides, parse_json_option

    return Overrides(
        stop=parse_json_option("--stop", options["stop"]),
        storage_path=options["storage_path"],
        num_samples=options["num_samples"],
        checkpoint_freq=options["checkpoint_freq"],
        strict=options["strict"],
    )


def _check_local_resources(
    experiments: list[Any], options: dict[str, Any], where: Callable[..., str]
) -> None:
    """On a private local Ray instance (no --ray-address), every trial must fit this
    machine, and a compiled update needs its C++ compiler; checked before Ray starts (a
    cluster is checked once connected, its compilers by the Learners' build)."""
    if options["ray_address"] is not None:
        return
    from drive_rllib.cli.experiments import check_compiler, check_resources, local_resources

    available = local_resources()
    for experiment in experiments:
        check_resources(experiment, where(experiment.name, "config"), available, "this machine has")
        check_compiler(experiment, where(experiment.name, "config", "torch_compile_learner"))


def _note(text: str) -> None:
    print(f"note: {text}", flush=True)


def _run(
    experiments: list[Any],
    options: dict[str, Any],
    resume: bool = False,
    resume_command: str | None = None,
    no_replay: bool = False,
) -> int:
    from drive_rllib.cli.history import experiment_locks
    from drive_rllib.cli.train import experiment_path, run_experiments

    # One rllib train per experiment folder: a second would record its trials in the
    # same Tune state as the first's, and one of them would be orphaned.
    with experiment_locks([experiment_path(experiment) for experiment in experiments]) as notes:
        for note in notes:
            _note(note)
        return run_experiments(
            experiments,
            options["ray_address"],
            options["verbose"],
            resume,
            resume_command,
            restore_replay=not no_replay,
        )


def _check_resume(experiments: list[Any], options: dict[str, Any]) -> None:
    """--resume continues runs as they were started: no new stop, samples or checkpoint
    frequency, and at least one experiment must have been saved."""
    from drive_rllib.cli.train import can_resume, experiment_path

    for option in ("stop", "num_samples", "checkpoint_freq"):
        if options[option] is not None:
            raise CLIError(
                f"--resume continues the trials as they were created; drop "
                f"--{option.replace('_', '-')}"
            )
    if not any(can_resume(experiment) for experiment in experiments):
        paths = ", ".join(experiment_path(experiment) for experiment in experiments)
        raise CLIError(
            f"--resume: no saved Tune experiment at {paths}; give the --storage-path of the "
            "first run, or run without --resume"
        )


def _note_existing(experiments: list[Any]) -> None:
    from drive_rllib.cli.train import can_resume, experiment_path

    for experiment in experiments:
        if can_resume(experiment):
            _note(
                f"{experiment_path(experiment)} already holds a Tune run: the new trials are "
                "written next to its trials (add --resume to continue it instead, or choose "
                "another --storage-path)"
            )


cli.add_command(export_experience)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``rllib`` console script and of ``python -m drive_rllib``."""
    from drive_rllib.mujoco_log import VERBOSE_ENV, redirect_mujoco_warnings

    args = list(sys.argv[1:] if argv is None else argv)
    if "-v" in args or "--verbose" in args:
        os.environ[VERBOSE_ENV] = "1"  # read by every process of the run, Ray's included
    # The checks below make envs in this process: MuJoCo's warnings to logging only.
    redirect_mujoco_warnings()
    try:
        status = cli.main(
            args=list(argv) if argv is not None else None, prog_name="rllib", standalone_mode=False
        )
    except CLIError as error:
        print(f"rllib: error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        print("rllib: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("rllib: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(status if isinstance(status, int) else 0)
