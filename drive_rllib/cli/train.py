"""`rllib train`: runs checked experiments through Tune on a private Ray instance, then
names the best checkpoint and the command that evaluates it."""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from drive_rllib import keys
from drive_rllib.cli.experiments import (
    EXIT_INTERRUPTED,
    NOTICE_LOGGERS,
    CLIError,
    Experiment,
    hide_ray_notices,
)
from drive_rllib.cli.progress import Budget, ProgressPrinter, finite, format_count
from drive_rllib.keys import nested_get


@contextmanager
def ray_session(address: str | None, verbose: bool = False) -> Iterator[None]:
    """Ray for one command: a private local instance (all CPUs, no dashboard), or the
    cluster at ``address``. Shuts down only what it started or attached to."""
    import ray

    if not verbose:
        hide_ray_notices()  # before ray.init, which logs the token-auth notice
    if address is None:
        # address="local" never attaches to one of the other Ray clusters on this machine.
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
    else:
        try:
            ray.init(
                address=address,
                log_to_driver=verbose,
                logging_level=logging.INFO if verbose else logging.WARNING,
            )
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise CLIError(f"--ray-address {address}: cannot connect to Ray: {error}") from None
    if verbose:
        for name in NOTICE_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
    else:
        hide_ray_notices()
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class TrialSummary:
    """One trial's outcome, in plain values."""

    experiment: str
    trial: str
    path: str
    error: str | None
    env_steps: float | None
    episode_return: float | None
    checkpoint: str | None
    checkpoint_return: float | None
    checkpoint_env_steps: float | None
    #: Neither finished nor failed: the run was interrupted (Ctrl-C) before its end.
    interrupted: bool = False


def best_checkpoint(trials: list[TrialSummary]) -> TrialSummary | None:
    """The trial whose checkpoint has the highest mean training return (the last
    checkpoint counts when no episode had finished); None without checkpoints."""
    candidates = [trial for trial in trials if trial.checkpoint is not None]
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda t: (
            t.checkpoint_return is not None,
            t.checkpoint_return or 0.0,
            t.checkpoint_env_steps or 0.0,
        ),
    )


def summary_lines(
    trials: list[TrialSummary], seconds: float, resume_command: str | None = None
) -> tuple[list[str], int]:
    """The closing lines of `rllib train` and its exit status: 130 when the run was
    interrupted (the last line then says how to resume it), else 1 when a trial
    failed, else 0."""
    lines = []
    for trial in trials:
        steps = "-" if trial.env_steps is None else format_count(trial.env_steps)
        if trial.error:
            state = f"FAILED: {trial.error}  (see {os.path.join(trial.path, 'error.txt')})"
        elif trial.interrupted:
            state = f"interrupted after {steps} env steps"
        else:
            episode_return = "-" if trial.episode_return is None else f"{trial.episode_return:.1f}"
            state = f"return {episode_return} after {steps} env steps"
        lines.append(f"{trial.experiment} trial {trial.trial}: {state}")
    failed = [trial for trial in trials if trial.error]
    interrupted = [trial for trial in trials if trial.interrupted and not trial.error]
    lines.append(
        f"{len(trials) - len(failed) - len(interrupted)} of {len(trials)} trials finished "
        f"in {seconds:.0f} s"
        + (f", {len(failed)} failed" if failed else "")
        + (f", {len(interrupted)} interrupted" if interrupted else "")
    )
    folders = [os.path.dirname(trial.path) for trial in trials]
    for folder in dict.fromkeys(folders):
        lines.append(f"Results: {folder}   (plot them: rllib plot {shlex.quote(folder)})")
        if folders.count(folder) > 1:
            lines.append(f"Tables of the sweep: rllib sweep-report {shlex.quote(folder)}")
    status = EXIT_INTERRUPTED if interrupted else 1 if failed else 0
    best = best_checkpoint([trial for trial in trials if not trial.error]) or best_checkpoint(
        trials
    )
    if best is None:
        lines.append("No checkpoint was written.")
    else:
        if best.checkpoint_return is None:
            detail = "no finished episode yet: the last checkpoint"
        else:
            detail = f"return {best.checkpoint_return:.1f}"
            if best.checkpoint_env_steps is not None:
                detail += f" at {format_count(best.checkpoint_env_steps)} env steps"
        lines.append(f"Best checkpoint: {best.checkpoint}  ({detail})")
        lines.append(f"Evaluate it: rllib evaluate {shlex.quote(best.checkpoint)}")
    if interrupted:
        lines.append(
            f"Interrupted: {len(interrupted)} trial(s) unfinished; Tune saved the experiment "
            "state (trials continue from their last checkpoint). Resume: "
            + (resume_command or "rllib train file FILE.yaml --resume (same --storage-path)")
        )
    return lines, status


def _summarize(experiment: Experiment, result: Any) -> TrialSummary:
    """A `TrialSummary` from one `ray.tune.Result`."""
    metrics = result.metrics or {}
    # (return, env steps, order, path) of each kept checkpoint; the highest return wins,
    # the latest when no checkpoint has one.
    scored = [
        (
            finite(nested_get(checkpoint_metrics, keys.RETURN)),
            finite(nested_get(checkpoint_metrics, keys.ENV_STEPS)),
            order,
            checkpoint.path,
        )
        for order, (checkpoint, checkpoint_metrics) in enumerate(result.best_checkpoints or [])
    ]
    best_return, best_steps, best_path = None, None, None
    if scored:
        best_return, best_steps, _, best_path = max(
            scored, key=lambda score: (score[0] is not None, score[0] or 0.0, score[2])
        )
    elif result.checkpoint is not None:
        best_path = result.checkpoint.path
    error = None if result.error is None else error_line(result.error)
    # Tune names trial folders <trainable>_<env>_<trial id>_<index>_<params>_<date>.
    trial_id = re.search(r"_([0-9a-f]{5}_\d{5})_", os.path.basename(result.path))
    return TrialSummary(
        experiment=experiment.name,
        trial=trial_id.group(1) if trial_id else os.path.basename(result.path),
        path=result.path,
        error=error,
        env_steps=finite(nested_get(metrics, keys.ENV_STEPS)),
        episode_return=finite(nested_get(metrics, keys.RETURN)),
        checkpoint=best_path,
        checkpoint_return=best_return,
        checkpoint_env_steps=best_steps,
        # Tune marks the last result of a trial that met its stop criteria `done`; after
        # Ctrl-C the trials it stopped are TERMINATED too, but their last result is not done.
        interrupted=error is None and not metrics.get("done"),
    )


def error_line(error: BaseException | str) -> str:
    """The most telling line of a trial's error: the last ``SomeError: message`` line of
    its (possibly remote) traceback, else its last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b.*: \S", line):
            return line
    return lines[-1] if lines else type(error).__name__


def _progress_callback(printer: ProgressPrinter) -> Any:
    from ray import tune

    class ProgressCallback(tune.Callback):
        """Feeds every trial result to the progress printer."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            printer.result(trial.trial_id, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            printer.message(f"trial {trial.trial_id} finished")

        def on_trial_error(self, iteration, trials, trial, **info):
            printer.message(f"trial {trial.trial_id} failed (its error is printed at the end)")

    return ProgressCallback()


def experiment_path(experiment: Experiment) -> str:
    """The experiment's folder (or URI): storage path (default ~/ray_results, as Tune's) /
    name."""
    storage = experiment.storage_path or os.path.expanduser("~/ray_results")
    if "://" in storage:
        return f"{storage.rstrip('/')}/{experiment.name}"
    return os.path.join(storage, experiment.name)


def can_resume(experiment: Experiment) -> bool:
    """Whether the experiment's folder holds a Tune experiment state to resume from."""
    from ray import tune

    try:
        return tune.Tuner.can_restore(experiment_path(experiment))
    except (OSError, ValueError, ImportError):  # an unreachable URI, no cloud credentials
        return False


def run_experiments(
    experiments: list[Experiment],
    ray_address: str | None = None,
    verbose: bool = False,
    resume: bool = False,
    resume_command: str | None = None,
) -> int:
    """Runs the experiments one after the other and prints the summary; the exit status.

    With ``resume``, an experiment whose folder holds a Tune experiment state continues
    from it (unfinished and failed trials resume from their last checkpoint, finished
    ones are kept); the others start afresh. An interrupted experiment (Ctrl-C) ends the
    run: the following ones are not started, and the summary says how to resume.
    """
    # Tune's own table reporter is replaced by the progress line (kept with --verbose).
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from drive_rllib.algorithm import register

    start = time.monotonic()
    trials: list[TrialSummary] = []
    with ray_session(ray_address, verbose):
        register()
        if ray_address is not None:
            import ray

            from drive_rllib.cli.experiments import check_resources

            for experiment in experiments:
                check_resources(
                    experiment, experiment.name, ray.cluster_resources(), "the cluster has"
                )
        for experiment in experiments:
            resuming = resume and can_resume(experiment)
            print(
                f"== {experiment.name}: {experiment.run} on {experiment.env}, "
                f"{experiment.num_samples} sample(s) per grid point (Tune's num_samples), "
                f"stop {experiment.stop or 'never (Ctrl-C ends it)'}"
                + (f"; resuming {experiment_path(experiment)}" if resuming else ""),
                flush=True,
            )
            printer = ProgressPrinter(Budget.from_stop(experiment.stop))
            callbacks = [_progress_callback(printer)]
            try:
                results = (
                    _resume(experiment, callbacks, verbose)
                    if resuming
                    else _fit(experiment, callbacks, verbose)
                )
            finally:
                printer.end_line()
            summaries = [_summarize(experiment, result) for result in results]
            trials.extend(summaries)
            if any(summary.interrupted for summary in summaries):
                break
    lines, status = summary_lines(trials, time.monotonic() - start, resume_command)
    print("\n".join(lines), flush=True)
    return status


def _fit(experiment: Experiment, callbacks: list[Any], verbose: bool) -> Any:
    """A new Tune run of the experiment; its `ray.tune.ResultGrid`."""
    from ray import tune

    tuner = tune.Tuner(
        experiment.run,
        param_space=experiment.config,
        tune_config=tune.TuneConfig(num_samples=experiment.num_samples),
        run_config=tune.RunConfig(
            name=experiment.name,
            storage_path=experiment.storage_path,
            stop=experiment.stop,
            checkpoint_config=tune.CheckpointConfig(**experiment.checkpoint_config),
            failure_config=tune.FailureConfig(max_failures=experiment.max_failures),
            callbacks=callbacks,
            verbose=2 if verbose else 0,
        ),
    )
    return tuner.fit()


def _resume(experiment: Experiment, callbacks: list[Any], verbose: bool) -> Any:
    """Continues the Tune run saved in the experiment's folder; its `ray.tune.ResultGrid`.

    ``tune.run(resume_config=...)`` rather than ``Tuner.restore``: a restored Tuner
    brings back the callbacks pickled with the first run (a stale progress printer),
    while ``tune.run`` takes fresh ones. Trials keep the config, stop criteria and
    sample count they were created with.
    """
    from ray import tune

    analysis = tune.run(
        experiment.run,
        name=experiment.name,
        storage_path=experiment.storage_path,
        stop=experiment.stop,
        checkpoint_config=tune.CheckpointConfig(**experiment.checkpoint_config),
        max_failures=experiment.max_failures,
        callbacks=callbacks,
        verbose=2 if verbose else 0,
        resume_config=tune.ResumeConfig(
            unfinished=tune.ResumeConfig.ResumeType.RESUME,
            errored=tune.ResumeConfig.ResumeType.RESUME,
        ),
        raise_on_failed_trial=False,
    )
    return tune.ResultGrid(analysis)
