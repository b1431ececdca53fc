"""Resources are checked before anything waits; README's Python block runs verbatim.

`resource_shortfall` is checked without Ray; the README block and a config that does
not fit run in subprocesses, each with its own private Ray instance (2 CPUs).
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

from drive_rllib.algorithm.config import DRIVEConfig
from drive_rllib.algorithm.resources import (
    replay_start_error,
    resource_request,
    resource_shortfall,
)

REPO = pathlib.Path(__file__).resolve().parents[2]


#: The ``ray.init`` call of README's Python block (the tests give it 2 CPUs).
READMES_INIT = 'ray.init(address="local", include_dashboard=False, log_to_driver=False)'


def readme_python_block() -> str:
    """The Python block between README's <!-- readme:python --> markers, verbatim."""
    text = (REPO / "README.md").read_text()
    match = re.search(
        r"<!-- readme:python -->\n```python\n(.*?)```\n<!-- /readme:python -->", text, re.DOTALL
    )
    assert match, "README.md has no <!-- readme:python --> block"
    return match.group(1)


def run_python(code: str, cwd: pathlib.Path, timeout: float = 600):
    """``python -c code`` in ``cwd`` with its own Ray temp folder (so any Ray instance it
    starts is private) and token authentication off (a throwaway local cluster)."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        {
            "RAY_AUTH_MODE": "disabled",
            "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pendulum(runners: int, learners: int, cpus_per_learner: float) -> DRIVEConfig:
    return (
        DRIVEConfig()
        .environment("Pendulum-v1")
        .env_runners(num_env_runners=runners)
        .learners(num_learners=learners, num_cpus_per_learner=cpus_per_learner)
    )


def test_request_counts_runners_learners_and_under_tune_the_main_process():
    config = pendulum(runners=2, learners=2, cpus_per_learner=0.5)
    assert resource_request(config, include_main_process=False) == {"CPU": 3.0}
    assert resource_request(config, include_main_process=True) == {"CPU": 4.0}


def test_a_config_that_does_not_fit_gets_one_line_naming_what_to_lower():
    message = resource_shortfall(
        pendulum(runners=2, learners=2, cpus_per_learner=0.5),
        {"CPU": 2.0},
        include_main_process=False,
    )
    assert message == (
        "DRIVE asks Ray for 3 CPU (the cluster has 2) (2 env runner(s) x 1 CPU, 2 learner(s) "
        "x 0.5 CPU), so it would wait forever: lower num_env_runners, num_learners or "
        "num_cpus_per_learner (e.g. 0.5), or use a larger cluster."
    )
    assert (
        resource_shortfall(
            pendulum(runners=1, learners=2, cpus_per_learner=0.5), {"CPU": 2.0}, False
        )
        is None
    )
    gpu = pendulum(runners=0, learners=1, cpus_per_learner=0).learners(num_gpus_per_learner=1)
    assert "num_gpus_per_learner" in resource_shortfall(gpu, {"CPU": 2.0}, False)


@pytest.mark.ray
@pytest.mark.slow
def test_readme_python_block_runs_verbatim_on_two_cpus_and_exits_cleanly(tmp_path):
    code = readme_python_block()
    assert READMES_INIT in code
    # The block uses all CPUs; this test gives it 2, as on the project's machine.
    code = code.replace(READMES_INIT, READMES_INIT.replace(")", ", num_cpus=2)"))
    completed = run_python(code, tmp_path)
    assert completed.returncode == 0, completed.stderr[-5000:]
    assert (tmp_path / "drive_ckpt" / "replay.npz").exists()
    # algo.stop() at the end: no LearnerGroup.__del__ traceback at exit.
    assert "Traceback" not in completed.stderr, completed.stderr[-5000:]
    # It prints a number: the mean return of the finished episodes (not nan).
    (line,) = completed.stdout.strip().splitlines()
    assert line.startswith("mean return of the finished episodes: ")
    assert math.isfinite(float(line.rsplit(" ", 1)[1]))
    # And none of RLlib's notices a user cannot act on.
    for notice in ("new API stack", "DeprecationWarning", "gputil", "RLModuleConfig"):
        assert notice not in completed.stderr, completed.stderr[-5000:]


@pytest.mark.ray
@pytest.mark.slow
def test_build_algo_that_does_not_fit_fails_at_once_instead_of_waiting(tmp_path):
    code = readme_python_block().replace(READMES_INIT, READMES_INIT.replace(")", ", num_cpus=2)"))
    code = code.replace("num_env_runners=1", "num_env_runners=2")
    completed = run_python(code, tmp_path, timeout=240)
    assert completed.returncode != 0
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: DRIVE asks Ray for 3 CPU (the cluster has 2)"), (
        completed.stderr[-3000:]
    )
    assert "lower num_env_runners" in last


def test_replay_start_error_says_what_to_change():
    # No custom resources: the only cause is a worker that did not get to run.
    plain = replay_start_error(None)
    assert "RAY_worker_niceness=0" in plain and "no node offers" not in plain
    pinned = replay_start_error({"head": 0.01})
    assert "{'head': 0.01}" in pinned and "replay_actor_resources" in pinned
    assert "RAY_worker_niceness=0" in pinned
