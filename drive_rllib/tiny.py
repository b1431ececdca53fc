"""Tiny DRIVE networks that train in seconds: the sizes of ``tuned_examples/drive_debug.yaml``.

The tests that train through Ray, the determinism check and the sweep's smoke
run add their own loop settings (T, C, warm-up, evaluation interval) on top of
these; ``tests/cli/test_experiments.py`` checks that the debug file uses the same
sizes.
"""

from __future__ import annotations

from typing import Any

TINY_NETWORKS: dict[str, Any] = {
    "ensemble_size": 3,
    "num_elites": 2,
    "model_hiddens": [32, 32],
    "policy_hiddens": [32, 32],
    "value_hiddens": [32, 32],
    "train_batch_size_per_learner": 32,
    "model_eval_batch_size": 64,
    "replay_capacity": 5_000,
}
