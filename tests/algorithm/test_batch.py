"""Replay rows -> RLlib's learner batch (built inside the replay actor) -> the core's tensors."""

from __future__ import annotations

import numpy as np
import pytest
import ray
import torch

from drive_rllib.algorithm.batch import core_batch, learner_batch, sample_learner_batch
from drive_rllib.replay import FIELDS, create_replay_actor
from tests.replay.test_actor import A, S, make_batch


@pytest.mark.ray
def test_sample_learner_batch_is_a_multi_agent_batch_of_train_rows(ray_instance) -> None:
    # Moved from tests/replay/test_actor.py: the replay returns plain rows, and the
    # algorithm wraps them into RLlib's batch inside the actor's process, under the
    # replay's own field names.
    actor = create_replay_actor(50, S, A, holdout_every=4, seed=1)
    actor.add.remote(make_batch(range(20)))  # id == position; calls run in order
    batch_ref = actor.__ray_call__.remote(sample_learner_batch, 64)
    # Imported after the call is submitted so the driver's and the actor's
    # (torch-heavy) RLlib imports overlap.
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    batch = ray.get(batch_ref)
    assert isinstance(batch, MultiAgentBatch)
    assert batch.env_steps() == 64
    assert list(batch.policy_batches) == ["default_policy"]
    module_batch = batch.policy_batches["default_policy"]
    assert isinstance(module_batch, SampleBatch)
    assert (
        set(module_batch.keys())
        == set(FIELDS)
        == {
            "obs",
            "action",
            "reward",
            "next_obs",
            "terminated",
            "truncated",
        }
    )
    assert module_batch["obs"].shape == (64, S)
    assert module_batch["action"].shape == (64, A)
    assert module_batch["next_obs"].shape == (64, S)
    for column in ("reward", "terminated", "truncated"):
        assert module_batch[column].shape == (64,)
    assert module_batch["terminated"].dtype == bool
    assert all(isinstance(module_batch[c], np.ndarray) for c in module_batch)

    ids = module_batch["obs"][:, 0].astype(np.int64)
    expected = make_batch(ids)
    for column in ("action", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(module_batch[column], expected[column], err_msg=column)
    assert not set(ids.tolist()) & {3, 7, 11, 15, 19}  # holdout positions

    named = ray.get(
        actor.__ray_call__.remote(sample_learner_batch, 8, module_id="drive", split="holdout")
    )
    assert list(named.policy_batches) == ["drive"]
    holdout_ids = named.policy_batches["drive"]["obs"][:, 0].astype(np.int64)
    assert set(holdout_ids.tolist()) <= {3, 7, 11, 15, 19}

    # entropy_floor_recent_rows: recent_obs holds observations of the last rows only.
    recent = ray.get(actor.__ray_call__.remote(sample_learner_batch, 200, recent_rows=5))
    module_batch = recent.policy_batches["default_policy"]
    assert set(module_batch.keys()) == set(FIELDS) | {"recent_obs"}
    assert module_batch["recent_obs"].shape == (200, S)
    recent_ids = module_batch["recent_obs"][:, 0].astype(np.int64)
    assert set(recent_ids.tolist()) == {15, 16, 17, 18, 19}
    np.testing.assert_array_equal(module_batch["recent_obs"], make_batch(recent_ids)["obs"])


def test_core_batch_is_float_tensors_under_the_same_names():
    rows = make_batch(range(6))
    batch = learner_batch(rows)
    assert batch.env_steps() == 6
    tensors = {
        name: torch.as_tensor(value)
        for name, value in batch.policy_batches["default_policy"].items()
    }
    core = core_batch(tensors)
    assert set(core) == {"obs", "action", "reward", "next_obs", "terminated"}
    assert all(value.dtype == torch.float32 for value in core.values())
    np.testing.assert_array_equal(core["terminated"].numpy(), rows["terminated"].astype(np.float32))
    np.testing.assert_array_equal(core["next_obs"].numpy(), rows["next_obs"])
    tensors["recent_obs"] = tensors["obs"].double() + 1
    core = core_batch(tensors)
    assert core["recent_obs"].dtype == torch.float32
    np.testing.assert_array_equal(core["recent_obs"].numpy(), rows["obs"] + 1)
