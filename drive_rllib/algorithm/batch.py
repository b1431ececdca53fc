"""Replay rows -> RLlib's learner batch -> the core's tensors: the one place they meet.

The replay returns plain numpy rows under its own field names
(`drive_rllib.replay.storage.FIELDS`: obs, action, reward, next_obs,
terminated, truncated), and the core's update step reads the same names, so
no field is renamed on the way: RLlib reads no column of a batch that no
connector touches (``LearnerGroup.update(batch_refs=...)`` only splits it into
minibatches and converts the arrays to tensors).

- `sample_learner_batch` runs inside the replay actor's process
  (``replay.__ray_call__.remote(sample_learner_batch, B)``), so the rows go
  actor -> object store -> Learner and never through the driver;
- `learner_batch` wraps rows into the `MultiAgentBatch` that
  ``LearnerGroup.update`` takes (a bare SampleBatch is not converted to tensors);
- `core_batch` turns one minibatch of a Learner into the core's float tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from drive_rllib.core.update import RECENT_OBS
from drive_rllib.replay.storage import ACTION, NEXT_OBS, OBS, REWARD, TERMINATED, TRAIN

if TYPE_CHECKING:
    import torch

    from drive_rllib.replay.actor import ReplayActor


def learner_batch(
    rows: Mapping[str, np.ndarray], module_id: str = DEFAULT_MODULE_ID
) -> MultiAgentBatch:
    """``MultiAgentBatch({module_id: SampleBatch(rows)}, env_steps=B)`` of the numpy rows.

    Args:
        rows: replay rows, `FIELDS` -> arrays with leading dim B.
        module_id: the RLModule the batch is for.
    """
    return MultiAgentBatch({module_id: SampleBatch(dict(rows))}, env_steps=len(rows[REWARD]))


def sample_learner_batch(
    replay: ReplayActor,
    batch_size: int,
    module_id: str = DEFAULT_MODULE_ID,
    split: str = TRAIN,
    recent_rows: int = 0,
) -> MultiAgentBatch:
    """B rows of ``split`` as a learner batch; runs on the replay actor via ``__ray_call__``.

    Args:
        replay: the `ReplayActor` instance (Ray passes it to ``__ray_call__``'s function).
        batch_size: B.
        module_id: the RLModule the batch is for.
        split: "train" (default), "holdout" or "all".
        recent_rows: > 0: the batch also holds ``recent_obs``, B observations drawn from
            the last ``recent_rows`` rows the replay received (``entropy_floor_recent_rows``).
    """
    rows = replay.sample(batch_size, split)
    if recent_rows > 0:
        rows[RECENT_OBS] = replay.sample_recent(batch_size, recent_rows)[OBS]
    return learner_batch(rows, module_id)


def core_batch(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A Learner's minibatch (tensors under the replay's names) as the core's float batch:
    obs [B, S], action [B, A], reward [B], next_obs [B, S], terminated [B] (0/1), and
    recent_obs [B, S] where the batch has it."""
    obs = batch[OBS]
    obs = obs.reshape(obs.shape[0], -1).float()
    out = {
        OBS: obs,
        ACTION: batch[ACTION].float(),
        REWARD: batch[REWARD].float(),
        NEXT_OBS: batch[NEXT_OBS].reshape(obs.shape).float(),
        TERMINATED: batch[TERMINATED].float(),
    }
    if RECENT_OBS in batch:
        out[RECENT_OBS] = batch[RECENT_OBS].reshape(obs.shape).float()
    return out
