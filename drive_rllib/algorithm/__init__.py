"""DRIVE on RLlib: a thin adapter around `drive_rllib.core` and `drive_rllib.replay`.

`DRIVEConfig` (settings) in ``config``, its checks in ``checks``, what it asks
Ray for in ``resources``, `DRIVE` (the Algorithm, Algorithm 1 of the spec) in
``drive``, `DRIVETorchRLModule` (every network and
statistic), `DRIVETorchLearner` (orchestration, no math), `DRIVEEnvRunner`
(pushes transitions to the replay actor), ``batch`` (replay rows -> learner
batch -> the core's tensors), ``checkpoint`` (the replay inside a
checkpoint), ``evaluation`` (the deterministic policy on a checkpoint,
`evaluate_checkpoint`). Importing this package registers nothing: call
`register()` to make "DRIVE" known to Tune.
"""

from drive_rllib.algorithm.config import DRIVEConfig
from drive_rllib.algorithm.drive import DRIVE, register
from drive_rllib.algorithm.env_runner import DRIVEEnvRunner, episodes_to_transitions
from drive_rllib.algorithm.evaluation import EvaluationResult, evaluate_checkpoint
from drive_rllib.algorithm.learner import DRIVETorchLearner
from drive_rllib.algorithm.rl_module import DRIVETorchRLModule

__all__ = [
    "DRIVE",
    "DRIVEConfig",
    "DRIVEEnvRunner",
    "DRIVETorchLearner",
    "DRIVETorchRLModule",
    "EvaluationResult",
    "episodes_to_transitions",
    "evaluate_checkpoint",
    "register",
]
