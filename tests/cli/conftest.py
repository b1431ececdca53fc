"""Helpers of the `rllib` command tests: run the command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO = pathlib.Path(__file__).resolve().parents[2]
TUNED_EXAMPLES = REPO / "tuned_examples"


@dataclass
class Run:
    """A finished `rllib` subprocess."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    ray_started: bool  # whether the command started a Ray instance (made a session folder)

    def describe(self) -> str:
        return (
            f"rllib {' '.join(self.args)} -> {self.returncode} in {self.seconds:.0f} s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-5000:]}"
        )


def rllib(
    *args: str,
    cwd: pathlib.Path | str | None = None,
    timeout: float = 600,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Runs ``python -m drive_rllib ARGS`` (no install needed) with its own Ray temp folder.

    The Ray temp folder (RAY_TMPDIR) is new and short (Unix socket paths are
    limited to 107 bytes), so any Ray instance the command starts is private to
    it and shows up there. RAY_ADDRESS is removed: the command must start its own.
    """
    ray_tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        {
            # Ray 2.60 turns on token authentication for new local clusters unless
            # this is set; these commands start their own throwaway instance.
            "RAY_AUTH_MODE": "disabled",
            "RAY_TMPDIR": str(ray_tmpdir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
    )
    env.update(extra_env or {})
    start = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "drive_rllib", *map(str, args)],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - start
    ray_started = (ray_tmpdir / "ray").exists()
    shutil.rmtree(ray_tmpdir, ignore_errors=True)
    return Run(
        list(map(str, args)),
        completed.returncode,
        completed.stdout,
        completed.stderr,
        seconds,
        ray_started,
    )


def result_rows(trial: pathlib.Path) -> list[dict]:
    """Every result Tune logged for ``trial`` (its ``result.json``), in order."""
    text = (trial / "result.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def train_with_a_failing_save(
    tmp_path: pathlib.Path, config: dict, stop: int, checkpoint_freq: int, fail_at: int
) -> Run:
    """`rllib train --env Pendulum-v1` into ``tmp_path/runs`` whose save at iteration
    ``fail_at`` finds the disk full (tests.algorithm.save_fault.FailOneSave)."""
    flag = tmp_path / "fail_save_at"
    flag.write_text(str(fail_at))
    return rllib(
        "train",
        "--env",
        "Pendulum-v1",
        "--config",
        json.dumps({**config, "callbacks": "tests.algorithm.save_fault.FailOneSave"}),
        "--stop",
        json.dumps({"training_iteration": stop}),
        "--checkpoint-freq",
        str(checkpoint_freq),
        "--storage-path",
        tmp_path / "runs",
        extra_env={"DRIVE_TEST_FAIL_SAVE": str(flag)},
    )
