"""The small things an RLlib user trips on: --version, the package's exports, quiet logs,
``module:EnvId`` envs in train and evaluate, one evaluation file per evaluation, and
reading the return distribution (--risk, --act risk, --calibration).

One tiny training run on a user's own env (a package on PYTHONPATH registering it) is
shared by the evaluation tests of this module.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests.cli.conftest import REPO, Run, rllib
from tests.cli.test_commands import TINY, checkpoint_of, saved_evaluation

#: What no default-mode run may print (RLlib's, Ray's and MuJoCo's notices).
NOISE = ("settotalmass", "new API stack", "DeprecationWarning", "token", "RLModuleConfig")


def test_version_names_drive_rllib_ray_torch_gymnasium_mujoco_and_the_extras():
    from importlib.metadata import version

    run = rllib("--version", timeout=600)
    assert run.returncode == 0, run.describe()
    lines = run.stdout.strip().splitlines()
    assert lines[0] == f"rllib (drive-rllib) {version('drive-rllib')}, ray 2.60.0"
    assert lines[1].startswith(f"torch {version('torch')} (")
    assert f"gymnasium {version('gymnasium')}, mujoco {version('mujoco')}" in lines[1]
    # The test extra installs both.
    assert lines[2] == (
        f"extras: plot (matplotlib {version('matplotlib')}), "
        f"render (imageio-ffmpeg {version('imageio-ffmpeg')})"
    )
    assert not run.ray_started


def test_version_says_how_to_install_a_missing_extra(monkeypatch):
    from importlib import metadata

    from drive_rllib import cli

    real = metadata.version

    def version(name):
        if name == "matplotlib":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    assert cli.version_lines()[2].startswith(
        "extras: plot: not installed (pip install 'drive-rllib[plot]'), render (imageio-ffmpeg "
    )


def test_the_package_exports_the_config_and_register():
    from drive_rllib import DRIVEConfig, register
    from drive_rllib.algorithm import drive

    assert DRIVEConfig is drive.DRIVEConfig and register is drive.register
    assert DRIVEConfig().training(model_horizon=3).horizon == 3


MAKE_HALFCHEETAH = "import gymnasium as gym\ngym.make('HalfCheetah-v5').close()\n"


def run_in_folder_with_run_subfolder(folder, code: str) -> subprocess.CompletedProcess:
    """``python -c code`` in ``folder`` (which gets a ``run/`` subfolder); it must succeed."""
    (folder / "run").mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert completed.returncode == 0, completed.stderr
    return completed


@pytest.mark.parametrize("redirect", [False, True])
def test_mujoco_warnings_go_to_the_run_folder_not_the_terminal(tmp_path, redirect):
    code = MAKE_HALFCHEETAH
    if redirect:
        code = (
            "from drive_rllib.mujoco_log import redirect_mujoco_warnings\n"
            "redirect_mujoco_warnings('run/MUJOCO_LOG.TXT')\n" + code
        )
    completed = run_in_folder_with_run_subfolder(tmp_path, code)
    if redirect:
        assert "settotalmass" not in completed.stderr + completed.stdout
        assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
        assert "settotalmass" in (tmp_path / "run" / "MUJOCO_LOG.TXT").read_text()
    else:  # what MuJoCo does by itself: the test above can fail
        assert "settotalmass" in completed.stderr + completed.stdout
        assert (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_the_algorithms_own_config_check_writes_no_mujoco_log_to_the_working_directory(tmp_path):
    # Algorithm.__init__ validates the config (and so makes the env) in the folder the
    # trial's process started in, before Tune moves it into the trial folder.
    code = (
        "from drive_rllib import DRIVEConfig\n"
        "DRIVEConfig().environment('HalfCheetah-v5').validate()\n"
        "from drive_rllib.mujoco_log import redirect_mujoco_warnings\n"
        "redirect_mujoco_warnings('run/MUJOCO_LOG.TXT')  # as DRIVE.setup does\n" + MAKE_HALFCHEETAH
    )
    completed = run_in_folder_with_run_subfolder(tmp_path, code)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert "settotalmass" not in completed.stderr + completed.stdout
    assert "settotalmass" in (tmp_path / "run" / "MUJOCO_LOG.TXT").read_text()


def test_the_commands_checks_on_a_mujoco_env_are_quiet(tmp_path):
    run = rllib(
        "train",
        "--env",
        "HalfCheetah-v5",
        "--config",
        '{"num_env_runners": 64, "updates_per_iteration": 5}',
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 2, run.describe()
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("rllib: error: --config: experiment 'DRIVE_HalfCheetah-v5': DRIVE asks")
    assert "lower num_env_runners" in line
    assert not run.ray_started
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert not any(noise in run.stdout + run.stderr for noise in NOISE)


ENVS_MODULE = """\
import gymnasium as gym

gym.register(
    "MyPendulum-v0",
    entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
    max_episode_steps=50,
)
"""
ENV_ID = "mypkg.envs:MyPendulum-v0"


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> pathlib.Path:
    """A folder with the user's package ``mypkg`` (``mypkg.envs`` registers MyPendulum-v0)."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "envs.py").write_text(textwrap.dedent(ENVS_MODULE))
    return folder


def user_rllib(folder: pathlib.Path, *args: str, timeout: float = 600) -> Run:
    return rllib(
        *args,
        cwd=folder,
        timeout=timeout,
        extra_env={"PYTHONPATH": os.pathsep.join([str(REPO), str(folder)])},
    )


@pytest.fixture(scope="module")
def user_run(user_folder) -> Run:
    """A tiny Pendulum run (50-step episodes) whose checkpoint the evaluations use."""
    return tiny_run(user_folder, "Pendulum-v1")


def tiny_run(folder: pathlib.Path, env: str, **settings) -> Run:
    config = {
        **TINY,
        "env_steps_per_iteration": 100,
        "num_warmup_steps": 100,
        "env_config": {"max_episode_steps": 50},
        **settings,
    }
    return user_rllib(
        folder,
        "train",
        "--env",
        env,
        "--config",
        json.dumps(config),
        "--stop",
        '{"timesteps_total": 200}',
        "--storage-path",
        str(folder / "runs"),
    )


@pytest.mark.ray
def test_train_takes_a_module_env_id_and_is_quiet(user_folder):
    # 200 warm-up steps: the first learning iteration catches up with 2 x C update steps,
    # and says so from inside the trial (`drive_rllib.algorithm.notices`).
    user_run = tiny_run(user_folder, ENV_ID, num_warmup_steps=200)
    assert user_run.returncode == 0, user_run.describe()
    assert "1 of 1 trials finished" in user_run.stdout
    lines = user_run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("learning starts: 10 update"))
    assert "the warm-up catch-up" in lines[start] and lines[start].endswith("_00000)")
    done = next(i for i, line in enumerate(lines) if line.startswith("warm-up catch-up done: 10"))
    # Both before the line of the iteration they belong to (the second).
    assert start < done < next(i for i, line in enumerate(lines) if line.startswith("it 2 "))
    assert not any(noise in user_run.stdout + user_run.stderr for noise in NOISE), (
        user_run.describe()
    )
    assert not (user_folder / "MUJOCO_LOG.TXT").exists()


@pytest.mark.ray
def test_train_writes_mujocos_log_to_the_trial_folder_not_the_working_directory(tmp_path):
    run = tiny_run(tmp_path, "HalfCheetah-v5")
    assert run.returncode == 0, run.describe()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    (log,) = (tmp_path / "runs").glob("DRIVE_HalfCheetah-v5/DRIVE_*/MUJOCO_LOG.TXT")
    assert "settotalmass" in log.read_text()
    assert "settotalmass" not in run.stdout + run.stderr


@pytest.fixture(scope="module")
def risk_evaluation(user_run, user_folder) -> Run:
    assert user_run.returncode == 0, user_run.describe()
    return user_rllib(
        user_folder,
        "evaluate",
        str(checkpoint_of(user_run)),
        "--env",
        ENV_ID,
        "--episodes",
        "2",
        "--risk",
        "1",
        "--act",
        "risk",
        "--calibration",
    )


@pytest.mark.ray
def test_evaluate_reports_the_risk_score_and_acts_by_it(risk_evaluation):
    assert risk_evaluation.returncode == 0, risk_evaluation.describe()
    out = risk_evaluation.stdout
    assert "risk-sensitive actions (best mu - 1 sigma of p_psi" in out
    assert "risk-sensitive score mu - 1 sigma of p_psi at s0: mean " in out
    document = json.loads(saved_evaluation(risk_evaluation).read_text())
    assert document["acting"] == {"policy": "risk", "risk": 1.0}
    for episode in document["per_episode"]:
        assert episode["risk_score"] == pytest.approx(
            episode["predicted_mean"] - episode["predicted_sigma"]
        )


@pytest.mark.ray
def test_calibration_writes_the_table_csv_and_png(risk_evaluation):
    assert risk_evaluation.returncode == 0, risk_evaluation.describe()
    out = risk_evaluation.stdout
    assert "calibration of p_psi at 100 visited (s, a)" in out  # 2 episodes of 50 steps
    saved = saved_evaluation(risk_evaluation)
    stem = saved.with_name(saved.name.replace("evaluation_", "calibration_"))
    with open(stem.with_suffix(".csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 100 and {row["t"] for row in rows} == {str(t) for t in range(50)}
    assert all(float(row["predicted_sigma"]) >= 0.1 for row in rows)  # sigma_min
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    coverage = json.loads(saved.read_text())["calibration"]["coverage"]
    assert set(coverage) == {"50%", "80%", "95%"}
    assert 0.0 <= coverage["50%"] <= coverage["80%"] <= coverage["95%"] <= 1.0


@pytest.mark.ray
def test_each_evaluation_gets_its_own_file(risk_evaluation, user_run, user_folder):
    assert risk_evaluation.returncode == 0, risk_evaluation.describe()
    again = user_rllib(
        user_folder, "evaluate", str(checkpoint_of(user_run)), "--env", ENV_ID, "--episodes", "1"
    )
    assert again.returncode == 0, again.describe()
    first, second = saved_evaluation(risk_evaluation), saved_evaluation(again)
    assert first != second and first.exists() and second.exists()
    assert json.loads(first.read_text())["episodes"] == 2
    assert json.loads(second.read_text())["episodes"] == 1
