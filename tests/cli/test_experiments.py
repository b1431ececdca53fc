"""Experiment files and options, without Ray: loading, old keys, every check and its message."""

from __future__ import annotations

import textwrap

import pytest

from drive_rllib.cli.experiments import (
    CLIError,
    Overrides,
    check_experiment,
    experiment_from_options,
    experiments_from_file,
    option_where,
    parse_json_option,
)
from tests.cli.conftest import TUNED_EXAMPLES

OUR_EXAMPLES = [
    "drive_debug.yaml",
    "drive_pendulum.yaml",
    "drive_invertedpendulum.yaml",
    "drive_halfcheetah.yaml",
    "drive_hopper.yaml",
    "drive_walker2d.yaml",
]


def write(tmp_path, text: str, name: str = "experiment.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load(path: str, overrides: Overrides | None = None):
    notes: list[str] = []
    experiments, lines = experiments_from_file(path, overrides or Overrides(), notes.append)
    return experiments, lines, notes


def check_file(path: str) -> None:
    experiments, lines, _ = load(path)
    for experiment in experiments:
        check_experiment(experiment, lines.where)


@pytest.mark.parametrize("name", OUR_EXAMPLES)
def test_tuned_examples_pass_every_check(name):
    experiments, lines, notes = load(str(TUNED_EXAMPLES / name))
    assert notes == []  # written in today's keys
    (experiment,) = experiments
    assert experiment.run == "DRIVE"
    assert experiment.stop  # every example says when it ends
    assert experiment.checkpoint_config["checkpoint_at_end"] is True
    check_experiment(experiment, lines.where)


def test_the_debug_file_and_the_tiny_networks_of_tests_and_benchmarks_agree():
    from drive_rllib.cli.experiments import file_config
    from drive_rllib.tiny import TINY_NETWORKS

    config = file_config(str(TUNED_EXAMPLES / "drive_debug.yaml"))
    assert {name: config[name] for name in TINY_NETWORKS} == TINY_NETWORKS


def test_old_keys_are_renamed_with_one_note_each(tmp_path):
    path = write(
        tmp_path,
        """\
        old-style:
          run: DRIVE
          env: Pendulum-v1
          local_dir: results
          checkpoint_freq: 2
          checkpoint_at_end: false
          stop:
            episode_reward_mean: -300
            timesteps_total: 1000
          config:
            model_horizon: 2
        """,
    )
    (experiment,), _, notes = load(path)
    assert experiment.stop == {
        "env_runners/episode_return_mean": -300,
        "num_env_steps_sampled_lifetime": 1000,
    }
    assert experiment.checkpoint_config == {"checkpoint_frequency": 2, "checkpoint_at_end": False}
    assert experiment.storage_path == str(tmp_path.cwd() / "results")
    assert experiment.config == {"horizon": 2, "env": "Pendulum-v1"}
    assert len(notes) == 5
    assert f"{path}:4: 'local_dir' is now 'storage_path'" in notes
    assert f"{path}:5: 'checkpoint_freq' is now 'checkpoint_config.checkpoint_frequency'" in notes
    assert f"{path}:6: 'checkpoint_at_end' is now 'checkpoint_config.checkpoint_at_end'" in notes
    assert (
        f"{path}:7: stop key 'episode_reward_mean' is now 'env_runners/episode_return_mean'"
        in notes
    )
    assert f"{path}:7: stop key 'timesteps_total' is now 'num_env_steps_sampled_lifetime'" in notes


def test_command_line_overrides_replace_the_files_values(tmp_path):
    path = write(
        tmp_path,
        """\
        a:
          run: DRIVE
          env: Pendulum-v1
          stop: {training_iteration: 100}
          num_samples: 1
          storage_path: /somewhere
        """,
    )
    overrides = Overrides(
        stop={"timesteps_total": 400}, storage_path=str(tmp_path), num_samples=3, checkpoint_freq=5
    )
    (experiment,), _, notes = load(path, overrides)
    assert experiment.stop == {"num_env_steps_sampled_lifetime": 400}
    assert notes == ["--stop: stop key 'timesteps_total' is now 'num_env_steps_sampled_lifetime'"]
    assert experiment.storage_path == str(tmp_path)
    assert experiment.num_samples == 3
    assert experiment.checkpoint_config == {"checkpoint_frequency": 5, "checkpoint_at_end": True}


def test_samples_of_a_fixed_seed_get_a_note(tmp_path):
    path = write(tmp_path, "a:\n  run: DRIVE\n  env: Pendulum-v1\n  config:\n    seed: 0\n")
    (experiment,), _, notes = load(path, Overrides(num_samples=3))
    assert experiment.num_samples == 3
    (note,) = notes
    assert note == (
        f"{path}:5: 3 samples with the fixed seed 0 repeat one run; for seeds write "
        "seed: {grid_search: [0, 1, 2]} instead"
    )


def test_uri_storage_paths_stay_uris(tmp_path):
    path = write(tmp_path, "a: {run: DRIVE, env: Pendulum-v1, storage_path: 's3://bucket/runs'}\n")
    (experiment,), _, _ = load(path)
    assert experiment.storage_path == "s3://bucket/runs"


def test_grid_search_configs_are_checked_per_variant(tmp_path):
    path = write(
        tmp_path,
        """\
        sweep:
          run: DRIVE
          env: Pendulum-v1
          config:
            model_horizon: {grid_search: [1, 0]}
        """,
    )
    with pytest.raises(
        CLIError,
        match=r"experiment.yaml:4: experiment 'sweep' \(variant horizon=0\): "
        r"`horizon` must be >= 1, got 0",
    ):
        check_file(path)


def test_options_form_builds_one_experiment():
    notes: list[str] = []
    experiment = experiment_from_options(
        "DRIVE",
        "Pendulum-v1",
        {"model_horizon": 3},
        Overrides(stop={"training_iteration": 2}),
        notes.append,
    )
    assert experiment.name == "DRIVE_Pendulum-v1"
    assert experiment.config == {"horizon": 3, "env": "Pendulum-v1"}
    assert experiment.stop == {"training_iteration": 2}
    check_experiment(experiment, option_where)


# -- bad input: one clear message each -------------------------------------------------------


def test_missing_file():
    with pytest.raises(CLIError, match=r"^no such file: nowhere\.yaml$"):
        load("nowhere.yaml")


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "a:\n  run: DRIVE\n  env: [Pendulum-v1\n  stop: {}\n")
    with pytest.raises(CLIError, match=rf"^{path}:4:\d+: malformed YAML: "):
        load(path)


def test_top_level_must_name_experiments(tmp_path):
    with pytest.raises(CLIError, match="expected experiment names at the top level"):
        load(write(tmp_path, "- run: DRIVE\n"))


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("PPO", r"unknown run 'PPO': this command trains DRIVE only"),
        ("drive", r"unknown run 'drive' \(did you mean 'DRIVE'\?\)"),
    ],
)
def test_unknown_run(tmp_path, run, message):
    path = write(tmp_path, f"a:\n  env: Pendulum-v1\n  run: {run}\n")
    with pytest.raises(CLIError, match=rf"^{path}:3: {message}"):
        load(path)


def test_unknown_env_gets_gymnasiums_suggestion(tmp_path):
    path = write(tmp_path, "a:\n  run: DRIVE\n  env: HalfCheeta-v5\n")
    with pytest.raises(
        CLIError, match=rf"^{path}:3: unknown env 'HalfCheeta-v5': .*Did you mean: `HalfCheetah`\?"
    ):
        check_file(path)


def test_discrete_action_space_is_refused(tmp_path):
    path = write(tmp_path, "a:\n  run: DRIVE\n  env: CartPole-v1\n")
    with pytest.raises(
        CLIError,
        match=r"DRIVE needs a continuous \(Box\) action space; env 'CartPole-v1' has Discrete\(2\)",
    ):
        check_file(path)


def test_unknown_config_key_suggests_the_closest(tmp_path):
    path = write(
        tmp_path, "a:\n  run: DRIVE\n  env: Pendulum-v1\n  config:\n    seed: 0\n    horizn: 3\n"
    )
    with pytest.raises(
        CLIError,
        match=rf"^{path}:6: unknown config key 'horizn' in experiment 'a' \(did you mean 'horizon'\?\)$",
    ):
        check_file(path)


def test_rllib_config_keys_and_their_old_aliases_are_accepted(tmp_path):
    path = write(
        tmp_path,
        """\
        a:
          run: DRIVE
          env: Pendulum-v1
          config: {num_workers: 0, framework: torch, train_batch_size_per_learner: 64, gamma: 0.98}
        """,
    )
    check_file(path)


def test_unknown_experiment_key(tmp_path):
    path = write(tmp_path, "a:\n  run: DRIVE\n  env: Pendulum-v1\n  stopp: {}\n")
    with pytest.raises(
        CLIError,
        match=rf"^{path}:4: unknown key 'stopp' in experiment 'a' \(did you mean 'stop'\?\)",
    ):
        load(path)


def test_unknown_stop_key(tmp_path):
    path = write(
        tmp_path, "a:\n  run: DRIVE\n  env: Pendulum-v1\n  stop: {episode_return_mean: 1}\n"
    )
    with pytest.raises(
        CLIError,
        match=r"unknown stop key 'episode_return_mean' \(did you mean 'env_runners/episode_return_mean'\?\)",
    ):
        load(path)


def test_old_and_new_name_together_is_an_error(tmp_path):
    path = write(
        tmp_path, "a:\n  run: DRIVE\n  env: Pendulum-v1\n  local_dir: x\n  storage_path: y\n"
    )
    with pytest.raises(CLIError, match="both 'local_dir' and 'storage_path' are given"):
        load(path)


def test_bad_json_options():
    with pytest.raises(CLIError, match=r"^--config: invalid JSON \(Expecting property name"):
        parse_json_option("--config", "{horizon: 3}")
    with pytest.raises(CLIError, match=r"^--stop: expected a JSON object"):
        parse_json_option("--stop", "[1]")
