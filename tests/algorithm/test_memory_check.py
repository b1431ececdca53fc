"""validate()'s memory check: the replay, the model-state buffer and the networks against
the machine's memory (no Ray cluster)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from drive_rllib.algorithm import DRIVEConfig, checks
from drive_rllib.replay.storage import ReplayStorage, row_bytes

#: The machine the refusals are asserted on (the check reads the real one otherwise).
MACHINE_BYTES = 32 * 10**9


class WideObservationEnv(gym.Env):
    """A Box observation of ``env_config["obs_dim"]`` entries; never stepped."""

    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        obs_dim = (config or {}).get("obs_dim", 3)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "machine_memory_bytes", lambda: MACHINE_BYTES)


def wide(obs_dim: int, **training) -> DRIVEConfig:
    return (
        DRIVEConfig()
        .environment(WideObservationEnv, env_config={"obs_dim": obs_dim})
        .training(**training)
    )


def test_row_bytes_is_what_the_storage_allocates():
    storage = ReplayStorage(capacity=7, obs_dim=5, action_dim=2)
    allocated = sum(array.nbytes for array in storage._arrays.values())
    assert allocated == 7 * row_bytes(5, 2) == 7 * (4 * (2 * 5 + 2 + 1) + 2)


def test_a_model_state_buffer_beyond_the_machine_is_refused_naming_it(machine):
    config = wide(100_000, replay_capacity=2_000)
    # 10 rounds x 256 states x (20 + 1) steps = 53,760 states x 100,000 x 4 bytes.
    assert config.to_spec().update.model_state_capacity == 53_760
    with pytest.raises(ValueError) as error:
        config.validate()
    # One line of ours; RLlib's `_value_error` adds its own about _validate_config.
    message, rllib_line = str(error.value).split("\n")
    assert "_validate_config" in rllib_line
    assert "model-state buffer 21.5 GB per Learner" in message
    assert "this machine's 32.0 GB" in message
    assert "Most of it is the model-state buffer: lower model_state_rounds (10)" in message


def test_a_replay_beyond_the_machine_is_refused_naming_it(machine):
    config = wide(10_000, replay_capacity=500_000)
    with pytest.raises(ValueError) as error:
        config.validate()
    # One line of ours; RLlib's `_value_error` adds its own about _validate_config.
    message, rllib_line = str(error.value).split("\n")
    assert "_validate_config" in rllib_line
    # 500,000 rows x (4 (2 x 10,000 + 2 + 1) + 2) bytes.
    assert "the replay 40.0 GB (500000 rows" in message
    assert "Most of it is the replay: lower replay_capacity (500000)" in message


def test_the_default_pendulum_config_passes(machine):
    DRIVEConfig().environment("Pendulum-v1").validate()


def test_the_checkpoint_counts_the_model_state_buffer():
    config = wide(10_000, replay_capacity=1_000)
    observation_space, action_space = config.env_spaces()
    needs = checks.memory_needs(config, observation_space, action_space)
    assert needs.model_states == 53_760 * 10_000 * 4
    assert needs.checkpoint > needs.replay + needs.model_states
    assert needs.total == 2 * needs.replay + needs.model_states + needs.networks


def test_a_replay_actor_pinned_to_a_node_skips_the_check(machine):
    wide(10_000, replay_capacity=500_000, replay_actor_resources={"head": 0.01}).validate()


def test_the_machine_memory_is_known():
    assert checks.machine_memory_bytes() > 10**8
