"""RLlib 2.x's own tuned examples of the SAC / DDPG / TD3 / APEX-DDPG family, with only
``run:`` set to DRIVE, run after at most one round of edits.

The files are copied unchanged under tests/cli/data/rllib_tuned_examples/ (each header
names its source). In-process tests check every file without Ray; one subprocess runs
pendulum-sac.yaml end to end, others check the command's one error block.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from drive_rllib.cli.experiments import (
    CLIError,
    Overrides,
    check_experiment,
    check_resources,
    closest,
    experiments_from_file,
)
from tests.cli.conftest import rllib

DATA = pathlib.Path(__file__).parent / "data" / "rllib_tuned_examples"
TWO_CPUS = {"CPU": 2.0, "GPU": 0.0}

#: File -> what the first run says, and the one edit that makes it run:
#: None (runs as it is), ("env", old id, current id) or ("resources", old text, new text).
FAMILY = {
    "sac__pendulum-sac.yaml": None,
    "sac__halfcheetah-sac.yaml": ("env", "HalfCheetah-v3", "HalfCheetah-v5"),
    "ddpg__pendulum-ddpg.yaml": None,
    "ddpg__mountaincarcontinuous-ddpg.yaml": None,
    "ddpg__halfcheetah-ddpg.yaml": ("env", "HalfCheetah-v2", "HalfCheetah-v5"),
    "td3__pendulum-td3.yaml": None,
    "td3__invertedpendulum-td3.yaml": ("env", "InvertedPendulum-v2", "InvertedPendulum-v5"),
    "td3__mujoco-td3.yaml": ("env", "-v2", "-v5"),
    "apex_ddpg__pendulum-apex-ddpg.yaml": ("resources", "num_workers: 16", "num_workers: 1"),
    "apex_ddpg__mountaincarcontinuous-apex-ddpg.yaml": (
        "resources",
        "num_workers: 16",
        "num_workers: 1",
    ),
}


def as_drive(name: str, tmp_path: pathlib.Path, edit: tuple[str, str] | None = None) -> str:
    """The file with `run: <ALGO>` -> `run: DRIVE` (and one more edit), written to tmp_path."""
    text = re.sub(r"run: \w+", "run: DRIVE", (DATA / name).read_text())
    if edit:
        text = text.replace(*edit)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def check(path: str, strict: bool = False) -> tuple[list, list[str]]:
    """Every check `rllib train file` makes before Ray starts, on a 2-CPU machine."""
    notes: list[str] = []
    experiments, lines = experiments_from_file(path, Overrides(strict=strict), notes.append)
    for experiment in experiments:
        check_experiment(experiment, lines.where)
        check_resources(experiment, lines.where(experiment.name), TWO_CPUS, "this machine has")
    return experiments, notes


def test_every_family_file_is_kept_with_its_source():
    assert sorted(p.name for p in DATA.glob("*.yaml")) == sorted(FAMILY)
    for path in DATA.glob("*.yaml"):
        assert path.read_text().startswith("# Source: https://github.com/ray-project/ray/blob/"), (
            path
        )


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_files_pass_every_check_after_at_most_one_round(name, tmp_path):
    fix = FAMILY[name]
    path = as_drive(name, tmp_path)
    if fix is None:
        check(path)
        return
    kind, old, new = fix
    with pytest.raises(CLIError) as error:
        check(path)
    lines = str(error.value).splitlines()
    problems = lines[1:] if len(lines) > 1 else lines
    if kind == "env":
        # Every line names the env's current version (all of a grid search at once).
        assert all(re.search(r"use '\w+-v5', its current version$", line) for line in problems)
    else:
        (line,) = lines
        assert "this machine has 2" in line and "lower num_env_runners" in line, line
    check(as_drive(name, tmp_path, (old, new)))


def test_pendulum_sac_keys_get_their_drive_meaning(tmp_path):
    (experiment,), notes = check(as_drive("sac__pendulum-sac.yaml", tmp_path))
    config = experiment.config
    assert config["env_config"] == {"max_episode_steps": 200}  # old horizon: episode length
    assert "horizon" not in config  # DRIVE's H keeps its default
    assert config["num_warmup_steps"] == 256  # learning_starts
    assert config["env_steps_per_iteration"] == 1000  # timesteps_per_iteration
    assert config["updates_per_iteration"] == 1000  # rollout_fragment_length 1: 1 per step
    assert config["train_batch_size_per_learner"] == 256  # train_batch_size
    assert config["metrics_num_episodes_for_smoothing"] == 5
    assert config["prior_lr"] == config["posterior_lr"] == 3e-4  # actor_learning_rate
    assert config["value_lr"] == 3e-4 and config["entropy_floor_lr"] == 3e-4
    assert config["value_hiddens"] == config["policy_hiddens"] == [256, 256]
    assert config["target_entropy"] is None  # auto: -A, DRIVE's default
    assert config["tau"] == 0.005
    for old in ("framework", "soft_horizon", "n_step", "no_done_at_end", "twin_q"):
        assert old not in config
    text = "\n".join(notes)
    assert "'horizon' (old RLlib's episode length) is now env_config.max_episode_steps" in text
    assert "'framework' is ignored: DRIVE runs on torch" in text
    assert "'n_step' is ignored" in text and "'soft_horizon' is ignored" in text


def test_tau_of_a_periodic_hard_update_becomes_a_per_update_rate(tmp_path):
    (experiment,), _ = check(
        as_drive(
            "apex_ddpg__pendulum-apex-ddpg.yaml", tmp_path, ("num_workers: 16", "num_workers: 1")
        )
    )
    assert experiment.config["tau"] == pytest.approx(1.0 / 50000)
    assert experiment.config["num_env_runners"] == 1


def test_strict_makes_ignored_keys_errors_all_in_one_block(tmp_path):
    with pytest.raises(CLIError) as error:
        check(as_drive("td3__pendulum-td3.yaml", tmp_path), strict=True)
    lines = str(error.value).splitlines()
    assert lines[0] == "experiment 'pendulum-td3' has 2 problems (fix them all, then rerun):"
    assert (
        "'framework' has no meaning in DRIVE (DRIVE runs on torch); remove it (--strict)"
        in (lines[1])
    )
    assert "'replay_buffer_config.type' has no meaning in DRIVE" in lines[2]


def write(tmp_path: pathlib.Path, config: str) -> str:
    path = tmp_path / "experiment.yaml"
    path.write_text(f"a:\n  run: DRIVE\n  env: Pendulum-v1\n  config:\n{config}")
    return str(path)


def test_all_unknown_keys_are_reported_together_with_typo_hints_only(tmp_path):
    path = write(tmp_path, "    horizn: 3\n    updates_per_iteration: 5\n    fancy_option: 1\n")
    with pytest.raises(CLIError) as error:
        check(path)
    assert str(error.value).splitlines() == [
        "experiment 'a' has 2 problems (fix them all, then rerun):",
        f"  {path}:5: unknown config key 'horizn' in experiment 'a' (did you mean 'horizon'?)",
        f"  {path}:7: unknown config key 'fancy_option' in experiment 'a'",
    ]


@pytest.mark.parametrize("word", ["soft_horizon", "n_step", "policy_model", "replay_buffers"])
def test_did_you_mean_is_never_a_guess_by_meaning(word):
    from drive_rllib.cli.experiments import accepted_config_keys

    assert closest(word, accepted_config_keys()[1]) == ""


def test_horizon_is_h_in_drive_files_and_refused_when_ambiguous(tmp_path):
    (experiment,), _ = check(write(tmp_path, "    horizon: 3\n    updates_per_iteration: 5\n"))
    assert experiment.config["horizon"] == 3
    (experiment,), _ = check(write(tmp_path, "    model_horizon: 4\n"))
    assert experiment.config["horizon"] == 4 and "model_horizon" not in experiment.config
    with pytest.raises(CLIError, match=r"'horizon' is ambiguous here .*write model_horizon: 3"):
        check(write(tmp_path, "    horizon: 3\n"))
    with pytest.raises(CLIError, match=r"'horizon' is ambiguous here"):
        check(write(tmp_path, "    horizon: 3\n    learning_starts: 10\n    alpha: 0.5\n"))


def test_the_command_reports_a_family_files_one_problem_before_ray_starts(tmp_path):
    run = rllib(
        "train",
        "file",
        as_drive("apex_ddpg__pendulum-apex-ddpg.yaml", tmp_path),
        "--strict",
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 2, run.describe()
    assert not run.ray_started
    errors = [line for line in run.stderr.splitlines() if line.startswith("rllib: error:")]
    assert errors == [
        "rllib: error: experiment 'pendulum-apex-ddpg' has 4 problems (fix them all, then rerun):"
    ], run.describe()
    block = run.stderr[run.stderr.index("rllib: error:") :].splitlines()[1:]
    assert len(block) == 4 and all("remove it (--strict)" in line for line in block), block


@pytest.mark.ray
@pytest.mark.slow
def test_pendulum_sac_yaml_runs_with_only_run_changed(tmp_path):
    path = as_drive("sac__pendulum-sac.yaml", tmp_path)
    run = rllib(
        "train",
        "file",
        path,
        "--storage-path",
        tmp_path / "runs",
        "--stop",
        '{"timesteps_total": 500}',
        cwd=tmp_path,
        timeout=900,
    )
    assert run.returncode == 0, run.describe()
    assert "1 of 1 trials finished" in run.stdout, run.describe()
    assert "note: " in run.stdout and "is now 'num_warmup_steps'" in run.stdout
    assert re.search(r"Best checkpoint: \S+checkpoint_\d+", run.stdout), run.describe()
