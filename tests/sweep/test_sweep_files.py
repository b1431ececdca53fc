"""The sweep's experiment file and Python example, the two num_samples, and `--resume`'s
checks and summary (no Ray instance)."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from drive_rllib.cli.experiments import (
    CLIError,
    Overrides,
    check_experiment,
    experiments_from_file,
)
from drive_rllib.cli.train import EXIT_INTERRUPTED, TrialSummary, summary_lines
from tests.cli.conftest import REPO, TUNED_EXAMPLES, rllib

SWEEP_YAML = TUNED_EXAMPLES / "drive_sweep_h_n.yaml"


def load(path):
    notes: list[str] = []
    experiments, lines = experiments_from_file(str(path), Overrides(), notes.append)
    return experiments, lines, notes


def sweep_module():
    spec = importlib.util.spec_from_file_location(
        "drive_sweep_h_n", REPO / "tuned_examples" / "drive_sweep_h_n.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_file_passes_every_check_with_the_grid_and_tunes_seeds():
    (experiment,), lines, notes = load(SWEEP_YAML)
    assert notes == []
    check_experiment(experiment, lines.where)  # validates all 12 grid points
    config = experiment.config
    assert sorted(config["horizon"]["grid_search"]) == [1, 3, 5, 10]
    assert sorted(config["num_samples"]["grid_search"]) == [1, 2, 4]  # DRIVE's N
    assert experiment.num_samples == 2  # Tune's: two seeds per grid point
    assert "seed" not in config  # else the two repeats would be one run twice
    assert experiment.stop == {"num_env_steps_sampled_lifetime": 3000}
    # One CPU per trial in one process: two trials at once on two cores.
    assert (config["num_env_runners"], config["num_learners"]) == (0, 0)
    assert config["num_cpus_for_main_process"] == 1
    assert experiment.checkpoint_config["checkpoint_frequency"] == 10  # for --resume


def test_one_cpu_per_trial():
    from drive_rllib.algorithm import DRIVE
    from drive_rllib.cli.experiments import resolved_variants

    (experiment,), _, _ = load(SWEEP_YAML)
    for _, variant in resolved_variants(experiment.config):
        assert DRIVE.default_resource_request(variant).bundles == [{"CPU": 1}]


def test_python_example_runs_the_same_sweep_as_the_file():
    module = sweep_module()
    (experiment,), _, _ = load(SWEEP_YAML)
    config = module.param_space()
    for key, value in experiment.config.items():
        assert getattr(config, key) == value, key
    assert module.SEEDS == experiment.num_samples
    assert {module.ENV_STEPS_KEY: module.BUDGET} == experiment.stop


def test_python_example_refuses_to_resume_a_folder_without_a_saved_sweep():
    module = sweep_module()
    with pytest.raises(SystemExit):
        module.main(["--resume", "/nonexistent/drive-sweep-h-n"])


def test_an_experiment_level_grid_over_num_samples_says_where_drives_n_goes(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(
        textwrap.dedent("""\
        a:
          run: DRIVE
          env: Pendulum-v1
          num_samples: {grid_search: [1, 2, 4]}
        """)
    )
    with pytest.raises(CLIError) as error:
        load(path)
    assert str(error.value) == (
        f"{path}:4: the experiment's num_samples (Tune's repeats of every grid point, e.g. "
        "seeds) must be an integer >= 1, got {'grid_search': [1, 2, 4]}; to sweep DRIVE's N "
        "put it under config (config: {num_samples: {grid_search: [1, 2, 4]}})"
    )


def test_tunes_num_samples_option_leaves_drives_n_alone(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("a: {run: DRIVE, env: Pendulum-v1, num_samples: 2, config: {num_samples: 4}}\n")
    notes: list[str] = []
    (experiment,), _ = experiments_from_file(str(path), Overrides(num_samples=3), notes.append)
    assert experiment.num_samples == 3
    assert experiment.config["num_samples"] == 4


def summary(trial: str, **kwargs) -> TrialSummary:
    fields = {
        "experiment": "sweep",
        "trial": trial,
        "path": f"/runs/sweep/{trial}",
        "error": None,
        "env_steps": 400.0,
        "episode_return": -500.0,
        "checkpoint": f"/runs/sweep/{trial}/checkpoint_000000",
        "checkpoint_return": -500.0,
        "checkpoint_env_steps": 400.0,
    }
    fields.update(kwargs)
    return TrialSummary(**fields)


def test_an_interrupted_run_says_how_to_resume_and_exits_130():
    trials = [
        summary("t0"),
        summary("t1", interrupted=True, env_steps=100.0),
        summary("t2", error="RuntimeError: boom"),
    ]
    command = "rllib train file sweep.yaml --storage-path runs --resume"
    lines, status = summary_lines(trials, 30, command)
    assert status == EXIT_INTERRUPTED == 130
    assert "sweep trial t1: interrupted after 100 env steps" in lines
    assert "1 of 3 trials finished in 30 s, 1 failed, 1 interrupted" in lines
    assert lines[-1].endswith(f"Resume: {command}")
    assert "Tables of the sweep: rllib sweep-report /runs/sweep" in lines
    _, status = summary_lines([summary("t0"), summary("t2", error="boom")], 30)
    assert status == 1


def test_resume_without_a_saved_run_or_with_new_settings_is_bad_input(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("drive-sweep: {run: DRIVE, env: Pendulum-v1, stop: {training_iteration: 1}}\n")
    run = rllib("train", "file", path, "--storage-path", tmp_path, "--resume", timeout=120)
    assert run.returncode == 2, run.describe()
    assert run.stderr.strip() == (
        f"rllib: error: --resume: no saved Tune experiment at {tmp_path / 'drive-sweep'}; "
        "give the --storage-path of the first run, or run without --resume"
    )
    assert not run.ray_started
    run = rllib("train", "file", path, "--resume", "--num-samples", "3", timeout=120)
    assert run.returncode == 2, run.describe()
    assert "--resume continues the trials as they were created; drop --num-samples" in run.stderr
