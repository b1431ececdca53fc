"""Metric keys DRIVE logs through RLlib's MetricsLogger, lower-case and slash-grouped.

Learner metrics appear in a result under ``learners/<module id>/<key>``; the
core's own metrics (``value/mu``, ``value/sigma``, ``kl/prior``, ``kl/value``,
``posterior/J_U``, ``policy/entropy``, ``entropy_floor/weight``, ...) are
logged there unchanged, next to the keys below. Driver metrics appear at the
top level of a result.
"""

from __future__ import annotations

# Learner: one loss per named term of the core ("loss/model", "loss/return", ...) ...
LOSS_PREFIX = "loss/"
# ... and their weighted sum, the scalar that is back-propagated.
LOSS_TOTAL = "loss/total"
# Held-out one-step error of the dynamics ensemble (mean squared error of the
# predicted mean), over the elites and over all members, at the last evaluation.
MODEL_HOLDOUT_ERROR = "model/holdout_error"
MODEL_HOLDOUT_ERROR_ALL = "model/holdout_error_all_members"
# Update steps run over the RLModule's lifetime (a module buffer, so checkpointed).
UPDATE_STEPS_LIFETIME = "training/update_steps_lifetime"
# Observation count seen by the normaliser (identical on every learner).
NORMALIZER_COUNT = "normalizer/count"

# Driver (Algorithm.training_step); its timers use RLlib's names under "timers/".
REPLAY_SIZE = "replay/size"
# 1.0 while random warm-up actions are taken, else 0.0.
WARMUP = "training/warmup"
# Update steps run (per learner) in this iteration.
UPDATE_STEPS = "training/update_steps"
