"""The sweep of ``drive_sweep_h_n.yaml`` through Ray Tune's Python API, optionally with ASHA.

A grid over the model horizon H (``horizon``) and the imagined samples per
start state N (DRIVE's ``num_samples``) on Pendulum-v1, every grid point run
``--seeds`` times (Tune's ``num_samples``: the other num_samples). The grid,
settings, budget, seeds and resources are read from the YAML file (its comments
explain them)::

    python tuned_examples/drive_sweep_h_n.py --storage-path runs           # the sweep
    python tuned_examples/drive_sweep_h_n.py --storage-path runs --asha    # stop poor trials
    python tuned_examples/drive_sweep_h_n.py --storage-path /tmp/s --smoke # tiny trials
    python tuned_examples/drive_sweep_h_n.py --resume runs/drive-sweep-h-n # after Ctrl-C
    rllib sweep-report runs/drive-sweep-h-n

Resuming: Ctrl-C (once) stops the sweep and Tune saves its state; a crash or
a reboot leaves the last saved state. ``--resume DIR`` calls
``Tuner.restore(DIR, trainable="DRIVE", resume_unfinished=True,
resume_errored=True)``: finished trials are kept, unfinished and failed ones
continue from their last checkpoint (every 10 iterations, replay contents
included), trials not started yet start. The grid, seeds, stop and scheduler
are those of the first run (``--asha``, ``--seeds`` and ``--smoke`` are
ignored with ``--resume``).

With ``--asha``, an ASHA scheduler stops the trials whose training return at
1,600 env steps is in the lower half of those that reached it (the rung sits
on an episode end: Pendulum's episodes last 200 steps, and an iteration in
which no episode ended reports no return). Stopped trials keep fewer env
steps; ``rllib sweep-report`` holds their last return to the budget, so their
AUC is an estimate. Without ``--asha`` every trial runs the whole budget.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from drive_rllib import keys
from drive_rllib.cli.experiments import Overrides, experiments_from_file
from drive_rllib.tiny import TINY_NETWORKS

#: The sweep's experiment file: its grid, settings, stop, seeds and resources.
SWEEP_FILE = Path(__file__).resolve().with_name("drive_sweep_h_n.yaml")
#: The result keys the sweep stops on and ranks by (declared in drive_rllib.keys).
ENV_STEPS_KEY = keys.ENV_STEPS
RETURN_KEY = keys.RETURN
SWEEP = experiments_from_file(str(SWEEP_FILE), Overrides(), lambda _note: None)[0][0]
NAME = SWEEP.name
SEEDS = SWEEP.num_samples  # Tune's num_samples: runs of every grid point
BUDGET = SWEEP.stop[ENV_STEPS_KEY]  # env steps per trial
#: --smoke: a 2 x 2 grid of tiny trials (a few hundred env steps, tiny networks).
SMOKE_HORIZONS = [2, 1]
SMOKE_SAMPLES = [2, 1]
SMOKE_BUDGET = 400
SMOKE_SETTINGS: dict[str, Any] = {
    **TINY_NETWORKS,
    "env_steps_per_iteration": 100,
    "updates_per_iteration": 5,
    "num_warmup_steps": 100,
    "model_eval_interval": 5,
}


def param_space(smoke: bool = False) -> Any:
    """The DRIVEConfig of the sweep, with ``tune.grid_search`` over H and N.

    One CPU per trial, everything in the trial's process (Learner and env): Tune
    runs as many trials at once as there are CPUs, each with one torch thread
    (Ray sets OMP_NUM_THREADS to the actor's CPUs).
    """
    from ray import tune

    from drive_rllib.algorithm import DRIVEConfig

    config = DRIVEConfig().update_from_dict(SWEEP.config)
    if not smoke:
        return config
    return config.training(
        horizon=tune.grid_search(SMOKE_HORIZONS),
        num_samples=tune.grid_search(SMOKE_SAMPLES),  # DRIVE's N, not Tune's num_samples
        **SMOKE_SETTINGS,
    )


def asha(budget: int, smoke: bool = False) -> Any:
    """ASHA on the training return, with env steps as its clock (one rung, on an episode end)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr=ENV_STEPS_KEY,
        metric=RETURN_KEY,
        mode="max",
        max_t=budget,
        grace_period=200 if smoke else 1600,
        reduction_factor=2,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--storage-path",
        default=os.path.expanduser("~/ray_results"),
        help="folder of the results (default: ~/ray_results); the sweep is DIR/" + NAME,
    )
    parser.add_argument(
        "--seeds", type=int, default=SEEDS, help="runs of every grid point (Tune's num_samples)"
    )
    parser.add_argument("--asha", action="store_true", help="stop poor trials early (ASHA)")
    parser.add_argument("--smoke", action="store_true", help="a 2 x 2 grid of tiny trials")
    parser.add_argument("--resume", metavar="DIR", help="continue the sweep saved in DIR")
    parser.add_argument(
        "--num-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the private Ray"
    )
    args = parser.parse_args(argv)

    import ray
    from ray import tune

    from drive_rllib.algorithm import register

    if args.resume and not tune.Tuner.can_restore(os.path.abspath(args.resume)):
        parser.error(f"--resume: no saved Tune experiment in {args.resume}")
    # The training return is missing from results until the first episode ends; Tune
    # would otherwise fail a trial whose result lacks the scheduler's metric.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # A private Ray instance: never one of the other clusters on this machine.
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False)
    register()
    try:
        if args.resume:
            tuner = tune.Tuner.restore(
                os.path.abspath(args.resume),
                trainable="DRIVE",
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            budget = SMOKE_BUDGET if args.smoke else BUDGET
            tuner = tune.Tuner(
                "DRIVE",
                param_space=param_space(args.smoke),
                tune_config=tune.TuneConfig(
                    num_samples=args.seeds,
                    scheduler=asha(budget, args.smoke) if args.asha else None,
                ),
                run_config=tune.RunConfig(
                    name=NAME,
                    storage_path=os.path.abspath(args.storage_path),
                    stop={ENV_STEPS_KEY: budget},
                    checkpoint_config=tune.CheckpointConfig(
                        checkpoint_frequency=10, num_to_keep=1, checkpoint_at_end=True
                    ),
                ),
            )
        results = tuner.fit()
    finally:
        ray.shutdown()
    path = results.experiment_path
    # After Ctrl-C the trials Tune stopped have a last result that is not `done`.
    unfinished = sum(1 for r in results if r.error is None and not (r.metrics or {}).get("done"))
    print(
        f"{len(results)} trials: {len(results) - unfinished - results.num_errors} finished, "
        f"{results.num_errors} failed, {unfinished} unfinished. Results: {path}"
    )
    print(f"Tables and figures: rllib sweep-report {path}")
    if unfinished or results.num_errors:
        print(f"Continue the sweep: python {sys.argv[0]} --resume {path}")
    return 130 if unfinished else 1 if results.num_errors else 0


if __name__ == "__main__":
    sys.exit(main())
