"""`rllib train`, `evaluate` and `plot` end to end, each a subprocess with its own private Ray.

One training run of tuned_examples/drive_debug.yaml and one evaluation of its
checkpoint (with a video) are shared by the tests of this module
(module-scoped fixtures); two more runs cover the old RLlib key style and the
``--algo/--env`` form.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from drive_rllib.tiny import TINY_NETWORKS
from tests.cli.conftest import REPO, TUNED_EXAMPLES, Run, rllib

try:
    import imageio_ffmpeg  # noqa: F401 -- the mp4 writer `rllib evaluate --render` needs

    CAN_WRITE_MP4 = True
except ImportError:
    CAN_WRITE_MP4 = False

pytestmark = pytest.mark.ray

#: Tiny DRIVE settings for the runs below (as in drive_debug.yaml).
TINY = {
    **TINY_NETWORKS,
    "seed": 0,
    "env_steps_per_iteration": 100,
    "updates_per_iteration": 5,
    "num_warmup_steps": 100,
    "horizon": 2,
    "model_eval_interval": 5,
}


def checkpoint_of(run: Run) -> pathlib.Path:
    """The best checkpoint named by the second-to-last line, and the evaluate line's path."""
    best, evaluate = run.stdout.strip().splitlines()[-2:]
    match = re.fullmatch(r"Best checkpoint: (\S+)  \(.*\)", best)
    assert match, run.describe()
    assert evaluate == f"Evaluate it: rllib evaluate {match.group(1)}", run.describe()
    return pathlib.Path(match.group(1))


def saved_evaluation(run: Run) -> pathlib.Path:
    """The evaluation file `rllib evaluate` says it saved."""
    match = re.search(r"^Saved (\S+\.json)$", run.stdout, re.MULTILINE)
    assert match, run.describe()
    return pathlib.Path(match.group(1))


def readme_block(marker: str) -> str:
    """The Python block of README.md between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    text = (REPO / "README.md").read_text()
    match = re.search(
        rf"<!-- {marker} -->\n```python\n(.*?)```\n<!-- /{marker} -->", text, re.DOTALL
    )
    assert match, f"README.md has no <!-- {marker} --> block"
    return match.group(1)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def debug_run(storage) -> Run:
    return rllib("train", "file", TUNED_EXAMPLES / "drive_debug.yaml", "--storage-path", storage)


@pytest.fixture(scope="module")
def video(storage) -> pathlib.Path:
    return storage / "episode.mp4"


@pytest.fixture(scope="module")
def evaluation(debug_run, video) -> Run:
    render = ["--render", video] if CAN_WRITE_MP4 else []
    return rllib("evaluate", checkpoint_of(debug_run), "--episodes", "2", *render)


def test_train_file_debug_yaml_writes_a_checkpoint_and_exits_0(debug_run, storage):
    assert debug_run.returncode == 0, debug_run.describe()
    lines = debug_run.stdout.splitlines()
    # One plain progress line per iteration (stdout is not a terminal here).
    progress = [line for line in lines if re.match(r"it \d+  ", line)]
    assert len(progress) == 3, debug_run.describe()
    assert re.fullmatch(
        r"it 3  600/600 env steps  return -?\d+\.\d  [\d.k]+ env steps/s  [\d.k]+ updates/s  "
        r"ETA 0s  \(trial \w+\)",
        progress[-1],
    ), debug_run.describe()
    checkpoint = checkpoint_of(debug_run)
    assert (checkpoint / "rllib_checkpoint.json").exists()
    assert checkpoint.is_relative_to(storage / "drive-debug")
    assert f"Results: {storage / 'drive-debug'}" in debug_run.stdout
    assert "Traceback" not in debug_run.stderr, debug_run.describe()


def test_evaluate_prints_returns_and_predictions_and_saves_them(evaluation, debug_run):
    assert evaluation.returncode == 0, evaluation.describe()
    out = evaluation.stdout
    assert re.search(r"^return +-?\d+\.\d ± \d+\.\d +\(min ", out, re.MULTILINE), (
        evaluation.describe()
    )
    assert re.search(r"^episode length +\d+\.\d ± \d+\.\d +\(min ", out, re.MULTILINE)
    assert (
        "predicted p_psi(U|s0,a0) = N(mu, sigma^2) vs the discounted return obtained (gamma 0.99)"
        in out
    )
    saved = saved_evaluation(evaluation)
    assert saved.parent == checkpoint_of(debug_run)
    assert re.fullmatch(r"evaluation_\d{8}-\d{6}_seed0(_\d+)?\.json", saved.name), saved
    document = json.loads(saved.read_text())
    assert document["episodes"] == 2 and len(document["per_episode"]) == 2
    for episode in document["per_episode"]:
        assert 1 <= episode["length"] <= 1000
        assert episode["predicted_sigma"] >= 0.1  # sigma_min
        assert set(episode) >= {"episode_return", "discounted_return", "predicted_mean"}
    lengths = [episode["length"] for episode in document["per_episode"]]
    assert document["length_mean"] == pytest.approx(sum(lengths) / 2)


def test_readme_client_example_acts_like_rllib_evaluate(evaluation, debug_run, tmp_path):
    """RLlib's documented path: RLModule.from_checkpoint, forward_inference, the declared
    inference distribution, unsquash_action: the same return as `rllib evaluate`, seed 0."""
    assert evaluation.returncode == 0, evaluation.describe()
    code, count = re.subn(
        r'^checkpoint = ".*$',
        f"checkpoint = {str(checkpoint_of(debug_run))!r}",
        readme_block("readme:client"),
        flags=re.MULTILINE,
    )
    assert count == 1
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    client_return = float(completed.stdout.strip().splitlines()[-1])
    document = json.loads(saved_evaluation(evaluation).read_text())
    (seed_0,) = [e for e in document["per_episode"] if e["seed"] == 0]
    assert client_return == seed_0["episode_return"]


@pytest.mark.skipif(not CAN_WRITE_MP4, reason="imageio-ffmpeg is not installed")
def test_evaluate_writes_a_video_of_the_first_episode(evaluation, video):
    assert evaluation.returncode == 0, evaluation.describe()
    assert f"Video of the first episode: {video}" in evaluation.stdout
    assert video.stat().st_size > 1000


def test_plot_draws_returns_and_calibration(evaluation, storage, tmp_path):
    pytest.importorskip("matplotlib", reason="the optional 'plot' extra is not installed")
    assert evaluation.returncode == 0, evaluation.describe()
    out = tmp_path / "run.png"
    run = rllib("plot", storage / "drive-debug", "--out", out, timeout=120)
    assert run.returncode == 0, run.describe()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 configuration(s) from 1 trial(s), calibration of 1 evaluation(s)" in run.stdout


def test_old_rllib_key_style_runs_to_completion(tmp_path):
    (tmp_path / "old_style.yaml").write_text(
        textwrap.dedent(f"""\
        pendulum-old-keys:
          run: DRIVE
          env: Pendulum-v1
          local_dir: results
          checkpoint_freq: 1
          checkpoint_at_end: true
          stop:
            episode_reward_mean: 0
            timesteps_total: 200
          config: {json.dumps(TINY)}
        """)
    )
    run = rllib("train", "file", "old_style.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    for old, new in [
        ("'local_dir'", "'storage_path'"),
        ("'checkpoint_freq'", "'checkpoint_config.checkpoint_frequency'"),
        ("'checkpoint_at_end'", "'checkpoint_config.checkpoint_at_end'"),
        ("stop key 'episode_reward_mean'", "'env_runners/episode_return_mean'"),
        ("stop key 'timesteps_total'", "'num_env_steps_sampled_lifetime'"),
    ]:
        assert f"{old} is now {new}" in run.stdout, run.describe()
    # Two iterations of 100 env steps, a checkpoint after each, under local_dir.
    (trial,) = (tmp_path / "results" / "pendulum-old-keys").glob("DRIVE_*")
    assert sorted(path.name for path in trial.glob("checkpoint_*")) == [
        "checkpoint_000000",
        "checkpoint_000001",
    ]
    assert checkpoint_of(run).parent == trial


def test_train_options_form_runs_to_completion(tmp_path):
    run = rllib(
        "train",
        "--algo",
        "DRIVE",
        "--env",
        "Pendulum-v1",
        "--config",
        json.dumps(TINY),
        "--stop",
        '{"training_iteration": 2}',
        "--storage-path",
        tmp_path,
    )
    assert run.returncode == 0, run.describe()
    assert "== DRIVE_Pendulum-v1: DRIVE on Pendulum-v1" in run.stdout
    assert checkpoint_of(run).is_relative_to(tmp_path / "DRIVE_Pendulum-v1")
