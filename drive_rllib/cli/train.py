"""`rllib train`: runs checked experiments through Tune on a private Ray instance, then
names the best checkpoint and the command that evaluates it."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from drive_rllib import keys
from drive_rllib.cli.experiments import EXIT_INTERRUPTED, CLIError, Experiment
from drive_rllib.cli.history import rebuild_progress_files, replace_text
from drive_rllib.cli.progress import Budget, ProgressPrinter, finite, format_count
from drive_rllib.keys import nested_get
from drive_rllib.ray_notices import NOTICE_LOGGERS, hide_ray_notices


@contextmanager
def ray_session(
    address: str | None, verbose: bool = False, env_vars: dict[str, str] | None = None
) -> Iterator[None]:
    """Ray for one command: a private local instance (all CPUs, no dashboard), or the
    cluster at ``address``. ``env_vars`` reach every process of the run (the job's
    runtime environment). Shuts down only what it started or attached to."""
    import ray

    runtime_env = {"env_vars": env_vars} if env_vars else None

    if not verbose:
        hide_ray_notices()  # before ray.init, which logs the token-auth notice
    if address is None:
        # address="local" never attaches to one of the other Ray clusters on this machine.
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            runtime_env=runtime_env,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
    else:
        try:
            ray.init(
                address=address,
                runtime_env=runtime_env,
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
            f"Interrupted: {len(interrupted)} trial(s) unfinished; the running ones wrote a "
            "checkpoint, and resuming continues each from its newest complete checkpoint. "
            "Resume: "
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
    return TrialSummary(
        experiment=experiment.name,
        trial=trial_id(os.path.basename(result.path)),
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


def trial_id(folder_name: str) -> str:
    """The trial id in a trial folder's name (Tune names them
    <trainable>_<env>_<trial id>_<index>_<params>_<date>); the name where it has none."""
    found = re.search(r"_([0-9a-f]{5}_\d{5})_", folder_name)
    return found.group(1) if found else folder_name


def error_line(error: BaseException | str) -> str:
    """The most telling line of a trial's error: the last ``SomeError: message`` line of
    its (possibly remote) traceback, else its last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b.*: \S", line):
            return line
    return lines[-1] if lines else type(error).__name__


#: Seconds between two looks at the notice board.
NOTICE_POLL_S = 1.0


class NoticeReader:
    """Prints the notices trials post from inside long iterations (compile, catch-up,
    restore, evaluation; `drive_rllib.algorithm.notices`), each with its trial id."""

    def __init__(self, board: Any, printer: ProgressPrinter) -> None:
        self.board = board
        self.printer = printer
        self._last = 0.0

    def poll(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.board is None or (not force and now - self._last < NOTICE_POLL_S):
            return
        self._last = now
        import ray

        try:
            notices = ray.get(self.board.take.remote(), timeout=10)
        except (ray.exceptions.RayError, TimeoutError):
            return
        for source, text in notices:
            self.printer.message(f"{text}  (trial {trial_id(source)})")


def _progress_callback(printer: ProgressPrinter, notices: NoticeReader) -> Any:
    from ray import tune

    class ProgressCallback(tune.Callback):
        """Feeds every trial result to the progress printer, and the trials' notices."""

        def on_step_end(self, iteration, trials, **info):
            notices.poll()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            notices.poll(force=True)
            printer.result(trial.trial_id, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            notices.poll(force=True)
            printer.message(f"trial {trial.trial_id} finished")

        def on_trial_error(self, iteration, trials, trial, **info):
            printer.message(f"trial {trial.trial_id} failed (its error is printed at the end)")

    return ProgressCallback()


def _interrupt_callback(printer: ProgressPrinter) -> Any:
    from ray import tune
    from ray.tune.experiment import Trial

    class InterruptCallback(tune.Callback):
        """Ctrl-C / SIGTERM: every running trial finishes its iteration and checkpoints.

        Tune's own SIGINT handler ends the run at once, without a checkpoint. This
        callback puts its handler in front (from the controller's loop, which runs in
        the main thread): the first signal asks each running trial's next result for
        a checkpoint (``should_checkpoint``), and once those are written, hands over
        to Tune's handler, which saves the experiment state and ends the run. A second
        Ctrl-C goes straight to Tune's handler: the current iterations are abandoned.
        """

        def __init__(self) -> None:
            self.tune_handler: Any = None
            self.interrupted = False
            self.handed_over = False
            # Trials running at the signal that still owe a checkpoint (None: not known yet).
            self.waiting: set[str] | None = None
            self.asked: set[str] = set()
            self.saved: set[str] = set()

        def on_step_begin(self, iteration, trials, **info):
            if self.tune_handler is not None or self.handed_over:
                return
            handler = signal.getsignal(signal.SIGINT)
            if not callable(handler) or handler is signal.default_int_handler:
                # Tune installed no handler (TUNE_DISABLE_SIGINT_HANDLER=1): leave it.
                self.handed_over = True
                return
            self.tune_handler = handler
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)

        def _on_signal(self, signum, frame):
            if self.interrupted:
                self._hand_over()
                return
            self.interrupted = True
            # The next Ctrl-C goes to Tune's handler: the iterations in progress are abandoned.
            signal.signal(signal.SIGINT, self.tune_handler)
            printer.message(
                f"{signal.Signals(signum).name}: finishing the current iteration of each "
                "running trial and writing a checkpoint (Ctrl-C again to stop at once)"
            )

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.interrupted and not self.handed_over and trial.trial_id not in self.asked:
                # Read by Tune after the callbacks: it checkpoints the trial now.
                result["should_checkpoint"] = True
                self.asked.add(trial.trial_id)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if trial.trial_id in self.asked:
                self.saved.add(trial.trial_id)

        def on_step_end(self, iteration, trials, **info):
            if not self.interrupted or self.handed_over:
                return
            running = {trial.trial_id for trial in trials if trial.status == Trial.RUNNING}
            if self.waiting is None:
                self.waiting = set(running)
            self.waiting = (self.waiting & running) - self.saved
            if not self.waiting:
                self._hand_over()

        def _hand_over(self) -> None:
            if self.handed_over:
                return
            self.handed_over = True
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if self.tune_handler is not None:
                self.tune_handler(signal.SIGINT, None)

    return InterruptCallback()


#: `rllib train --env ...` writes its experiment here, so that `rllib train file ... --resume`
#: can continue it.
EXPERIMENT_FILE = "rllib_experiment.yaml"


def write_experiment_file(experiment: Experiment) -> str | None:
    """Writes the experiment in the file format into its folder; its path (None: a URI)."""
    import yaml

    folder = experiment_path(experiment)
    if "://" in folder:
        return None
    spec = {
        "run": experiment.run,
        "env": experiment.env,
        "stop": experiment.stop,
        "config": {key: value for key, value in experiment.config.items() if key != "env"},
        "checkpoint_config": experiment.checkpoint_config,
        "num_samples": experiment.num_samples,
        "storage_path": experiment.storage_path or os.path.expanduser("~/ray_results"),
        "max_failures": experiment.max_failures,
    }
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, EXPERIMENT_FILE)
    with open(path, "w") as file:
        file.write(
            "# Written by `rllib train --env ...`; continue the run with\n"
            f"#   rllib train file {shlex.quote(path)} --resume\n"
        )
        yaml.safe_dump({experiment.name: spec}, file, sort_keys=False)
    return path


def prepare_resume(experiment: Experiment, restore_replay: bool = True) -> list[str]:
    """Before Tune resumes an experiment: each unfinished trial continues from its newest
    loadable checkpoint (newer damaged or partial ones are skipped and named), its history
    is trimmed to that checkpoint (rows of later iterations describe lost work and would
    be logged twice), and Tune's saved state is pointed at the same checkpoint, without
    the decisions a failed save left pending. Without ``restore_replay`` a checkpoint's
    replay need not be loadable (the trial starts with an empty one). Returns one line
    per trial, for the user."""
    from drive_rllib.algorithm.checkpoint import newest_loadable_checkpoint

    folder = experiment_path(experiment)
    if "://" in folder or not os.path.isdir(folder):
        return []
    lines = []
    chosen: dict[str, str | None] = {}
    for name in sorted(os.listdir(folder)):
        trial_dir = os.path.join(folder, name)
        if not os.path.isfile(os.path.join(trial_dir, "params.json")):
            continue
        if _finished(trial_dir):
            continue  # Tune keeps finished trials as they are
        newest, skipped = newest_loadable_checkpoint(trial_dir, need_replay=restore_replay)
        for checkpoint, problem in skipped:
            lines.append(f"{name}: skips {checkpoint}: {problem}")
        chosen[name] = None if newest is None else newest[0]
        iteration = 0 if newest is None else int(newest[1]["iteration"])
        dropped = trim_history(trial_dir, iteration)
        if newest is None:
            line = f"{name}: no loadable checkpoint, starts again from iteration 1"
        else:
            line = (
                f"{name}: continues from {os.path.basename(newest[0])}: iteration "
                f"{iteration}, {format_count(newest[1]['env_steps'])} env steps"
            )
        if dropped:
            line += f" (dropped {dropped} logged row(s) of later iterations, whose state was lost)"
        if newest is not None and not restore_replay:
            line += "; weights and optimizers only, the replay starts empty (--no-replay)"
        lines.append(line)
    repair_experiment_state(folder, chosen)
    return lines


def repair_experiment_state(folder: str, chosen: dict[str, str | None]) -> None:
    """Rewrites Tune's ``experiment_state-*.json`` files in ``folder`` for a resume.

    A save that failed leaves Tune's decision to stop the trial pending
    (``_cached_trial_decisions``): restored with the state, it stops the resumed
    trial at its first save, and every later resume runs zero iterations. Those
    decisions are dropped. Each trial named in ``chosen`` (by its folder name) is
    pointed at the chosen checkpoint folder (None: no checkpoint, start afresh), so
    Tune restores the checkpoint the resume announced rather than the one it
    recorded last (which may be damaged, or gone).
    """
    import glob

    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    for state_file in glob.glob(os.path.join(folder, "experiment_state-*.json")):
        with open(state_file) as file:
            state = json.load(file)
        runner = state.get("runner_data", {})
        runner["_cached_trial_decisions"] = {}
        runner["_queued_trial_decisions"] = {}
        runner["_should_stop_experiment"] = False
        for entry in state.get("trial_data", []):
            trial_name = json.loads(entry[0]).get("relative_logdir")
            if trial_name not in chosen:
                continue
            metadata = _TrainingRunMetadata.from_json_state(entry[1])
            manager = metadata.checkpoint_manager
            if manager is None:
                continue
            path = chosen[trial_name]
            kept = [
                result
                for result in manager._checkpoint_results
                if path is not None and _same_folder(result.checkpoint.path, path)
            ]
            if path is None:
                manager._latest_checkpoint_result = None
            elif kept:
                manager._latest_checkpoint_result = kept[0]
            else:
                manager._latest_checkpoint_result = _TrainingResult(
                    checkpoint=Checkpoint(path), metrics={}
                )
                kept = [manager._latest_checkpoint_result]
            # Older checkpoints stay tracked (num_to_keep counts them); newer ones were
            # skipped as unloadable.
            older = [
                result
                for result in manager._checkpoint_results
                if path is not None
                and os.path.basename(result.checkpoint.path) < os.path.basename(path)
            ]
            manager._checkpoint_results = older + kept if path is not None else []
            metadata.invalidate_cache()
            entry[1] = metadata.get_json_state()
        replace_text(state_file, json.dumps(state))


def _same_folder(first: str, second: str) -> bool:
    return os.path.basename(first.rstrip("/")) == os.path.basename(second.rstrip("/"))


def trim_history(trial_dir: str, iteration: int) -> int:
    """Drops the rows of iterations after ``iteration`` from result.json and progress.csv;
    the number of rows dropped from result.json."""
    dropped = 0
    result_file = os.path.join(trial_dir, "result.json")
    if os.path.isfile(result_file):
        with open(result_file) as file:
            rows = [line for line in file if line.strip()]
        kept = [row for row in rows if _row_iteration(row) <= iteration]
        dropped = len(rows) - len(kept)
        if dropped:
            replace_text(result_file, "".join(kept))
    progress_file = os.path.join(trial_dir, "progress.csv")
    if os.path.isfile(progress_file):
        import csv

        with open(progress_file, newline="") as file:
            reader = csv.reader(file)
            table = list(reader)
        if table and keys.ITERATION in table[0]:
            column = table[0].index(keys.ITERATION)
            kept_rows = [row for row in table[1:] if row and float(row[column] or 0) <= iteration]
            if len(kept_rows) < len(table) - 1:
                import io

                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows([table[0], *kept_rows])
                replace_text(progress_file, text.getvalue())
    return dropped


def _finished(trial_dir: str) -> bool:
    """Whether the trial's last logged result is marked done (it met its stop criteria)."""
    try:
        with open(os.path.join(trial_dir, "result.json")) as file:
            rows = [line for line in file if line.strip()]
        return bool(rows) and bool(json.loads(rows[-1]).get("done"))
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _row_iteration(row: str) -> float:
    try:
        return float(json.loads(row).get(keys.ITERATION, 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 0.0


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
    restore_replay: bool = True,
) -> int:
    """Runs the experiments one after the other and prints the summary; the exit status.

    ``restore_replay`` False (``--no-replay``): resumed trials load weights and
    optimizers only and start with an empty replay.

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
    from drive_rllib.algorithm.checkpoint import NO_REPLAY_ENV

    env_vars = None if restore_replay else {NO_REPLAY_ENV: "1"}
    with ray_session(ray_address, verbose, env_vars):
        register()
        from drive_rllib.algorithm.notices import create_notice_board

        board = create_notice_board()
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
            if resuming:
                for line in prepare_resume(experiment, restore_replay):
                    print(f"resume: {line}", flush=True)
            printer = ProgressPrinter(Budget.from_stop(experiment.stop))
            notices = NoticeReader(board, printer)
            callbacks = [_progress_callback(printer, notices), _interrupt_callback(printer)]
            try:
                results = (
                    _resume(experiment, callbacks, verbose)
                    if resuming
                    else _fit(experiment, callbacks, verbose)
                )
            finally:
                printer.end_line()
                if resuming:  # Tune appended rows of other columns under the old header
                    rebuild_progress_files(experiment_path(experiment))
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
