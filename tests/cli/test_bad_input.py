"""Bad input to `rllib`: one `rllib: error:` line, exit status 2, and no Ray process started."""

from __future__ import annotations

import os

import pytest

from tests.cli.conftest import REPO, rllib

FILES = {
    "malformed.yaml": "a:\n  run: DRIVE\n  env: [Pendulum-v1\n  stop: {}\n",
    "unknown_run.yaml": "a:\n  run: PPO\n  env: Pendulum-v1\n",
    "unknown_env.yaml": "a:\n  run: DRIVE\n  env: HalfCheeta-v5\n",
    "discrete.yaml": "a:\n  run: DRIVE\n  env: CartPole-v1\n",
    "unknown_key.yaml": "a:\n  run: DRIVE\n  env: Pendulum-v1\n  config:\n    horizn: 3\n",
}

CASES = [
    pytest.param(
        ["train", "file", "missing.yaml"],
        "rllib: error: no such file: missing.yaml",
        id="missing-file",
    ),
    pytest.param(
        ["train", "file", "malformed.yaml"],
        "rllib: error: malformed.yaml:4:7: malformed YAML: expected ',' or ']', but got ':'",
        id="malformed-yaml",
    ),
    pytest.param(
        ["train", "file", "unknown_run.yaml"],
        "rllib: error: unknown_run.yaml:2: unknown run 'PPO': this command trains DRIVE only",
        id="unknown-run",
    ),
    pytest.param(
        ["train", "file", "unknown_env.yaml"],
        "rllib: error: unknown_env.yaml:3: unknown env 'HalfCheeta-v5': Environment `HalfCheeta` doesn't "
        "exist. Did you mean: `HalfCheetah`?",
        id="unknown-env",
    ),
    pytest.param(
        ["train", "file", "discrete.yaml"],
        "rllib: error: discrete.yaml:3: experiment 'a': DRIVE needs a continuous (Box) action space; "
        "env 'CartPole-v1' has Discrete(2)",
        id="discrete-actions",
    ),
    pytest.param(
        ["train", "--env", "CartPole-v1"],
        "rllib: error: --env: experiment 'DRIVE_CartPole-v1': DRIVE needs a continuous (Box) "
        "action space; env 'CartPole-v1' has Discrete(2)",
        id="discrete-actions-options",
    ),
    pytest.param(
        ["train", "file", "unknown_key.yaml"],
        "rllib: error: unknown_key.yaml:5: unknown config key 'horizn' in experiment 'a' "
        "(did you mean 'horizon'?)",
        id="unknown-config-key",
    ),
    pytest.param(
        ["train", "--env", "Pendulum-v1", "--config", '{"horizn": 3}'],
        "rllib: error: --config: unknown config key 'horizn'",
        id="unknown-config-key-options",
    ),
    pytest.param(
        ["evaluate", "no_checkpoint_here"],
        "rllib: error: no such checkpoint: no_checkpoint_here",
        id="missing-checkpoint",
    ),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_input_gives_one_error_line_and_exit_status_2(tmp_path, args, message):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    run = rllib(*args, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), run.describe()
    assert not run.ray_started, run.describe()


def test_render_without_an_mp4_writer_says_what_to_install(tmp_path):
    checkpoint = tmp_path / "checkpoint_000000"
    checkpoint.mkdir()
    (checkpoint / "rllib_checkpoint.json").write_text("{}")
    # A package that fails to import stands in for a missing imageio-ffmpeg.
    shadow = tmp_path / "shadow" / "imageio_ffmpeg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'imageio_ffmpeg'\", name='imageio_ffmpeg')\n"
    )
    run = rllib(
        "evaluate",
        checkpoint,
        "--render",
        tmp_path / "episode.mp4",
        extra_env={"PYTHONPATH": os.pathsep.join([str(shadow.parent), str(REPO)])},
        timeout=120,
    )
    assert run.returncode == 2, run.describe()
    expected = (
        "rllib: error: --render needs a video writer (imageio_ffmpeg is missing): pip install "
        "'drive-rllib[render]' (or pip install imageio-ffmpeg; a .gif needs neither)"
    )
    assert run.stderr.strip().splitlines() == [expected]
    assert not run.ray_started


def test_a_compiled_update_without_a_cxx_compiler_is_one_error_before_ray_starts(tmp_path):
    # The headline file compiles its update step; without a C++ compiler the trial would
    # fail only once Ray and the Learner are up.
    (tmp_path / "compiled.yaml").write_text(
        "a:\n  run: DRIVE\n  env: Pendulum-v1\n  config:\n    torch_compile_learner: true\n"
    )
    run = rllib(
        "train",
        "file",
        "compiled.yaml",
        cwd=tmp_path,
        extra_env={"CXX": str(tmp_path / "no-such-g++")},
        timeout=120,
    )
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.describe()
    assert lines[0].startswith(
        "rllib: error: compiled.yaml:5: experiment 'a': `torch_compile_learner` with the "
        "inductor backend needs a C++ compiler"
    ), run.describe()
    assert "torch_compile_learner: false in an experiment file" in lines[0]
    assert not run.ray_started, run.describe()


def test_resume_on_an_env_command_points_at_the_experiment_file():
    run = rllib("train", "--env", "Pendulum-v1", "--resume")
    assert run.returncode == 2, run.describe()
    (line,) = [line for line in run.stderr.splitlines() if line.strip()]
    assert "rllib train file <storage-path>/<experiment>/rllib_experiment.yaml --resume" in line
    assert not run.ray_started
