"""``benchmarks/gpu_check.sh``: on a machine without CUDA it says so and checks
nothing; its dry run (``GPU_CHECK_DRY_RUN=1``) runs every step of the script on the CPU,
so that a check that only a lent GPU runs cannot rot unseen (before its first GPU run,
step 2 was found broken only by running it on the CPU by hand)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has CUDA: gpu_check.sh would run for real"
)


def gpu_check(tmp_path: pathlib.Path, **env: str) -> subprocess.CompletedProcess:
    # The script calls `python`: the one running these tests.
    path = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(SCRIPT)],
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_without_cuda_it_skips_with_one_clear_line(tmp_path):
    run = gpu_check(tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gpu_check: SKIPPED: no CUDA device")
    assert lines[0].endswith("nothing was checked.")


@pytest.mark.slow
@pytest.mark.ray
def test_the_dry_run_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run = gpu_check(tmp_path, GPU_CHECK_DRY_RUN="1", GPU_CHECK_OUT=str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    stdout = run.stdout
    assert "gpu_check: DRY RUN on the CPU" in stdout
    # step 2: the training iteration, the device assertion, the profile
    assert "gpu_check: iteration 1:" in stdout
    assert "gpu_check: learner tensors on ['cpu']; env runner module on ['cpu']" in stdout
    assert "gpu_check: all_finite finds NaN and inf on cpu" in stdout
    assert "gpu_check: OK" in stdout
    assert "gpu_check: 2 profiled update steps through RLlib" in stdout
    assert (out / "learner_trace.json.gz").stat().st_size > 0
    # step 1, both batches; step 3 with its compiled setting (not left out)
    for batch in (256, 1024):
        rows = json.loads((out / f"update_step_cpu_b{batch}.json").read_text())["rows"]
        assert [row["precision"] for row in rows] == ["float32", "bfloat16"]
    ratio = json.loads((out / "learner_update_cpu.json").read_text())
    assert set(ratio["rows"]) == {"all", "compiled"}
    assert "failed, left out" not in stdout
