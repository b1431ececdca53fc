"""DRIVEConfig: defaults, what reaches the RLModule, and validate()'s messages (no Ray cluster)."""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest
from ray import tune

from drive_rllib.algorithm import DRIVE, DRIVEConfig, DRIVEEnvRunner, register
from drive_rllib.algorithm.config import DRIVE_SETTINGS
from drive_rllib.algorithm.rl_module import SPEC_KEY
from drive_rllib.core import DRIVESpec


class UnboundedActionEnv(gym.Env):
    """A Box action space without finite bounds."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()


class ImageObservationEnv(UnboundedActionEnv):
    """A bounded action space, but 2-D observations."""

    observation_space = gym.spaces.Box(0.0, 1.0, (4, 4), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def pendulum(**training) -> DRIVEConfig:
    return DRIVEConfig().environment("Pendulum-v1").training(**training)


def test_defaults_follow_the_spec():
    config = DRIVEConfig()
    assert (config.horizon, config.num_samples, config.gamma, config.alpha) == (5, 1, 0.99, 1.0)
    assert (config.ensemble_size, config.num_elites, config.tau) == (7, 5, 0.005)
    assert config.entropy_floor is True and config.target_entropy is None
    assert (config.policy_update, config.value_loss) == ("joint", "split")
    assert config.model_lr == 1e-3
    assert config.posterior_lr == config.prior_lr == config.value_lr == 3e-4
    assert config.entropy_floor_lr == 3e-4
    assert config.train_batch_size_per_learner == 256
    assert config.env_runner_cls is DRIVEEnvRunner
    assert config.algo_class is DRIVE
    assert not hasattr(config, "replay_buffer_config")


def test_training_sets_every_setting_and_the_module_sees_them():
    config = pendulum(horizon=3, num_samples=4, alpha=0.5, policy_update="distill", gamma=0.9)
    config.validate()
    # The RLModule receives the core's settings as one spec, serialised into model_config.
    spec = DRIVESpec.from_dict(config.model_config[SPEC_KEY]).update
    assert (spec.horizon, spec.num_samples) == (3, 4)
    assert (spec.alpha, spec.gamma) == (0.5, 0.9)
    assert spec.policy_update == "distill"


def test_training_keywords_are_the_spec_fields_and_the_loop_settings():
    # A setting added to the spec needs its keyword in training() (and nothing else
    # in the config): its default, its check and its way to the RLModule follow.
    keywords = [
        name
        for name, parameter in inspect.signature(DRIVEConfig.training).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert sorted(keywords) == sorted(DRIVE_SETTINGS)
    assert set(DRIVESpec.setting_names()) - set(DRIVE_SETTINGS) == {"gamma"}  # RLlib's own
    defaults = DRIVESpec().settings()
    config = DRIVEConfig()
    assert {name: getattr(config, name) for name in defaults} == defaults


def test_configs_pickled_under_either_module_name_still_load():
    # Older checkpoints and Tune states name the module DRIVEConfig was defined in then.
    import pickle

    assert pickle.loads(b"cdrive_rllib.algorithm.config\nDRIVEConfig\n.") is DRIVEConfig
    assert pickle.loads(b"cdrive_rllib.algorithm.drive\nDRIVEConfig\n.") is DRIVEConfig


def test_rollout_fragment_spreads_env_steps_over_runners():
    config = pendulum(env_steps_per_iteration=100).env_runners(num_env_runners=3)
    assert config.get_rollout_fragment_length() == 34  # ceil(100 / 3)
    config = pendulum(env_steps_per_iteration=100).env_runners(num_env_runners=0)
    assert config.get_rollout_fragment_length() == 100


def test_config_round_trips_through_a_dict():
    config = pendulum(horizon=3, model_hiddens=[64, 64])
    restored = DRIVEConfig.from_dict(config.to_dict())
    assert restored.horizon == 3 and restored.model_hiddens == [64, 64]
    restored.validate()


@pytest.mark.parametrize(
    "training, message",
    [
        ({"horizon": 0}, "`horizon` must be >= 1"),
        ({"horizon": 2.5}, "`horizon` must be an integer"),
        ({"num_samples": 0}, "`num_samples` must be >= 1"),
        ({"gamma": 0.0}, "`gamma` must lie in (0, 1]"),
        ({"gamma": 1.5}, "`gamma` must lie in (0, 1]"),
        ({"alpha": 0.0}, "`alpha` must be a number > 0"),
        ({"tau": 0.0}, "`tau` must lie in (0, 1]"),
        ({"tau": 1.5}, "`tau` must lie in (0, 1]"),
        ({"sigma_min": -0.1}, "`sigma_min` must be a number > 0"),
        ({"model_lr": 0.0}, "`model_lr` must be a number > 0"),
        (
            {"num_elites": 8, "ensemble_size": 7},
            "`num_elites` (8) must not exceed `ensemble_size` (7)",
        ),
        ({"ensemble_size": 0}, "`ensemble_size` must be >= 1"),
        ({"policy_update": "both"}, "`policy_update` must be one of ('joint', 'distill')"),
        ({"value_loss": "mse"}, "`value_loss` must be one of ('split', 'cross_entropy')"),
        ({"inference_policy": "q"}, "`inference_policy` must be one of ('prior', 'posterior')"),
        ({"model_hiddens": []}, "`model_hiddens` must be a non-empty list"),
        ({"updates_per_iteration": 0}, "`updates_per_iteration` must be >= 1"),
        ({"value_only_updates": -1}, "`value_only_updates` must be >= 0"),
        ({"restart_optimizers": "yes"}, "`restart_optimizers` must be"),
        ({"env_steps_per_iteration": 0}, "`env_steps_per_iteration` must be >= 1"),
        ({"num_warmup_steps": -1}, "`num_warmup_steps` must be >= 0"),
        ({"train_batch_size_per_learner": 0}, "`train_batch_size_per_learner` must be >= 1"),
        ({"replay_capacity": 10, "train_batch_size_per_learner": 32}, "`replay_capacity` (10)"),
        (
            {"posterior_batch_size": 33, "train_batch_size_per_learner": 32},
            "`posterior_batch_size` (33) exceeds one batch",
        ),
        ({"posterior_batch_size": -1}, "`posterior_batch_size` must be >= 0"),
        (
            {"model_batch_size": 33, "train_batch_size_per_learner": 32},
            "`model_batch_size` (33) exceeds one batch",
        ),
        ({"model_batch_size": -1}, "`model_batch_size` must be >= 0"),
        ({"holdout_every": 1}, "`holdout_every=1` would hold out every replay row"),
        ({"holdout_every": 0}, "set `model_eval_interval=0` too"),
        ({"target_entropy": "auto"}, "`target_entropy` must be a finite number or None"),
        ({"entropy_floor": 1}, "`entropy_floor` must be True or False"),
        ({"lr": 1e-3}, "DRIVE has one learning rate per component"),
        # Values that once passed validate() and broke the run later.
        ({"alpha": float("inf")}, "`alpha` must be a finite number"),
        ({"value_lr": float("nan")}, "`value_lr` must be a finite number"),
        ({"prior_lr": float("inf")}, "`prior_lr` must be a finite number"),
        ({"sigma_min": 1e-6}, "`sigma_min` (1e-06) is below 0.0001"),
        ({"target_entropy": 5.0}, "`target_entropy` (5.0) lies outside [-10 A, A] = [-10, 1]"),
        ({"target_entropy": -11.0}, "lies outside [-10 A, A]"),
        ({"target_entropy_per_dim": 2.0}, "`target_entropy_per_dim` must be a number in [-10, 1]"),
        ({"target_entropy_per_dim": None}, "`target_entropy_per_dim` must be a number in [-10, 1]"),
        ({"replay_timeout_s": 0}, "`replay_timeout_s` must be a finite number > 0"),
        ({"max_abs_value": float("inf")}, "`max_abs_value` must be a finite number > 0"),
        ({"max_rejected_share": 1.5}, "`max_rejected_share` must lie in [0, 1]"),
        ({"replay_snapshot_interval": -1}, "`replay_snapshot_interval` must be >= 0"),
        ({"max_skipped_updates": 0}, "`max_skipped_updates` must be >= 1"),
        ({"flush_denormals": 1}, "`flush_denormals` must be True or False"),
        ({"optimizer_implementation": "apex"}, "`optimizer_implementation` must be one of"),
        ({"gradient_check": "yes"}, "`gradient_check` must be one of"),
        ({"horizon": tune.grid_search([1, 5])}, "unresolved search space"),
        ({"num_samples": tune.choice([1, 2])}, "unresolved search space"),
    ],
)
def test_validate_rejects_bad_values_with_a_hint(training, message):
    config = pendulum(**training)
    with pytest.raises(ValueError) as error:
        config.validate()
    assert message in str(error.value)


def test_a_negative_number_of_env_runners_is_rejected():
    config = pendulum().env_runners(num_env_runners=-1)
    with pytest.raises(ValueError, match="`num_env_runners` must be >= 0"):
        config.validate()


def test_holdout_may_be_disabled_with_the_ranking():
    pendulum(holdout_every=0, model_eval_interval=0).validate()


def test_total_batch_must_split_evenly_over_learners():
    config = (
        DRIVEConfig()
        .environment("Pendulum-v1")
        .learners(num_learners=2)
        .training(train_batch_size_per_learner=None, train_batch_size=255)
    )
    with pytest.raises(ValueError, match="not divisible by `num_learners` \\(2\\)"):
        config.validate()
    config.training(train_batch_size=256)
    config.validate()
    assert config.train_batch_size_per_learner == 128


def test_discrete_action_env_is_rejected():
    with pytest.raises(ValueError) as error:
        DRIVEConfig().environment("CartPole-v1").validate()
    assert "continuous (Box) action space" in str(error.value)
    assert "Discrete(2)" in str(error.value)


def test_unbounded_action_space_is_rejected():
    with pytest.raises(ValueError, match="must be finite"):
        DRIVEConfig().environment(UnboundedActionEnv).validate()


def test_non_flat_observations_are_rejected():
    with pytest.raises(ValueError, match="flat Box observation space"):
        DRIVEConfig().environment(ImageObservationEnv).validate()


def test_unknown_env_id_is_rejected():
    with pytest.raises(ValueError, match="Unknown env 'NoSuchEnv-v0'"):
        DRIVEConfig().environment("NoSuchEnv-v0").validate()


def test_missing_env_is_rejected():
    with pytest.raises(ValueError, match="set config.environment"):
        DRIVEConfig().validate()


def test_actions_must_be_normalised():
    config = DRIVEConfig().environment("Pendulum-v1", normalize_actions=False)
    with pytest.raises(ValueError, match="normalize_actions=True"):
        config.validate()


def test_env_runner_must_push_to_the_replay():
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = pendulum().env_runners(env_runner_cls=SingleAgentEnvRunner)
    with pytest.raises(ValueError, match="must subclass DRIVEEnvRunner"):
        config.validate()


def test_register_makes_drive_known_to_tune():
    from ray.tune.registry import get_trainable_cls

    register()
    assert get_trainable_cls("DRIVE") is DRIVE


def test_update_chunks_catch_up_on_the_warm_up_in_chunks_of_c():
    from drive_rllib.algorithm.drive import update_chunks

    # C = 1000 per T = 1000 env steps: 1000 steps, or 5000 after a 5,000-step warm-up.
    assert update_chunks(1000, 1000, 5000, catch_up=False) == [1000]
    assert update_chunks(1000, 1000, 5000, catch_up=True) == [1000] * 5
    # UTD 0.5 over 2,600 rows: round(0.5 * 2600) = 1300 = 2 chunks of 500 and one of 300.
    assert update_chunks(500, 1000, 2600, catch_up=True) == [500, 500, 300]
    # never fewer than C
    assert update_chunks(200, 50, 10, catch_up=True) == [200]


@pytest.mark.parametrize(
    "framework, learners, message",
    [
        ({"torch_compile_learner": 1}, {}, "`torch_compile_learner` must be True or False"),
        (
            {
                "torch_compile_learner": True,
                "torch_compile_learner_what_to_compile": "complete_update",
            },
            {},
            "must be 'forward_train' for DRIVE",
        ),
        ({"torch_compile_learner": True}, {"num_learners": 2}, "`num_learners` (2) > 1"),
    ],
)
def test_torch_compile_settings_that_cannot_work_are_rejected(framework, learners, message):
    config = pendulum().framework(**framework).learners(**learners)
    with pytest.raises(ValueError) as error:
        config.validate()
    assert message in str(error.value)


def test_torch_compile_on_one_learner_is_accepted():
    pendulum().framework(torch_compile_learner=True).learners(num_learners=1).validate()
