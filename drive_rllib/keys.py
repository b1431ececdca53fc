"""Every metric key DRIVE logs or reads, each declared once with its meaning.

Plain strings, no imports beyond the standard library: the core, the RLlib
adapter and the CLI all take their keys from here (the CLI without importing
Ray). Keys are lower-case and slash-grouped. Learner keys appear in a result
under ``learners/<module id>/<key>``; driver keys at its top level.

Naming: ``loss/<term>`` is the unweighted batch mean of the term of that name
in one update step (``drive_rllib.core.update.update_terms``), exactly what
``combine_terms`` weights and sums into ``loss/total``. The model terms sum
over the E ensemble members (each fits its own bootstrap of the batch);
their per-member values are ``model/*_per_member``.

`KEYS` maps every key to its one-line meaning; `TERM_KEYS` maps the name of
each loss term to its key. A key declared twice fails on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

#: Every key -> its one-line meaning.
KEYS: dict[str, str] = {}

Value = TypeVar("Value")


def _declare(key: str, meaning: str) -> str:
    if key in KEYS:
        raise ValueError(f"metric key {key!r} is declared twice")
    if key != key.lower():
        raise ValueError(f"metric key {key!r} must be lower-case")
    KEYS[key] = meaning
    return key


# --- Learner: the terms of one update step (unweighted batch means) -------------------------

LOSS_MODEL = _declare(
    "loss/model", "Gaussian NLL of (s'-s, r) under f_hat, summed over the E members and dims"
)
LOSS_TERMINATION = _declare(
    "loss/termination", "termination head's cross-entropy, summed over the E members"
)
LOSS_RETURN = _declare(
    "loss/return", "Eq. 6: J_U = mean_i m_i, the imagined return from (s, a_t ~ q_phi)"
)
LOSS_KL_PRIOR = _declare("loss/kl_prior", "Eq. 6: J_KL1 = KL(q_phi || pi_theta)")
LOSS_KL_VALUE = _declare(
    "loss/kl_value", "Eq. 6: J_KL2 = KL(moment-matched target law || p_psi(U | s, a_t))"
)
LOSS_DISTILL = _declare(
    "loss/distill", "Eq. 5: KL(pi_theta || q_phi), q_phi fixed (policy_update='distill')"
)
LOSS_VALUE = _declare(
    "loss/value", "Eq. 4: cross-entropy of p_psi to the target law (value_loss='cross_entropy')"
)
LOSS_VALUE_MEAN = _declare(
    "loss/value_mean", "Eq. 4 split: 0.5 (mu - mean_i m_i)^2 (value_loss='split')"
)
LOSS_VALUE_SIGMA = _declare(
    "loss/value_sigma", "Eq. 4 split: cross-entropy with mu held fixed (value_loss='split')"
)
LOSS_ENTROPY = _declare("loss/entropy", "entropy floor: weight * log pi_theta(a | s)")
LOSS_ENTROPY_WEIGHT = _declare(
    "loss/entropy_weight", "entropy floor's weight loss: -log weight * (log pi + target entropy)"
)
LOSS_TOTAL = _declare(
    "loss/total", "sum over terms of weight * loss/<term>: the scalar back-propagated"
)

#: Name of each loss term of ``update_terms`` -> its key.
TERM_KEYS: dict[str, str] = {
    "model": LOSS_MODEL,
    "termination": LOSS_TERMINATION,
    "return": LOSS_RETURN,
    "kl_prior": LOSS_KL_PRIOR,
    "kl_value": LOSS_KL_VALUE,
    "distill": LOSS_DISTILL,
    "value": LOSS_VALUE,
    "value_mean": LOSS_VALUE_MEAN,
    "value_sigma": LOSS_VALUE_SIGMA,
    "entropy": LOSS_ENTROPY,
    "entropy_weight": LOSS_ENTROPY_WEIGHT,
}

# --- Learner: diagnostics of one update step (batch means, no gradient) ---------------------

MODEL_NLL_PER_MEMBER = _declare("model/nll_per_member", "loss/model divided by E")
MODEL_TERMINATION_PER_MEMBER = _declare(
    "model/termination_per_member", "loss/termination divided by E"
)
VALUE_CROSS_ENTROPY = _declare(
    "value/cross_entropy", "Eq. 4's cross-entropy of p_psi to the target law, whatever value_loss"
)
VALUE_MU = _declare("value/mu", "mu of p_psi(U | s, a) at the replayed (s, a)")
VALUE_SIGMA = _declare("value/sigma", "sigma of p_psi(U | s, a) at the replayed (s, a)")
VALUE_TARGET_MEAN = _declare("value/target_mean", "mean of Eq. 4's target components m_i")
VALUE_TARGET_STD = _declare("value/target_std", "sqrt of the mean of Eq. 4's target variances v_i")
POLICY_ENTROPY = _declare("policy/entropy", "-log pi_theta(a | s) of a sample a ~ pi_theta")
POLICY_STD = _declare("policy/std", "pre-squash standard deviation of pi_theta")
POSTERIOR_STD = _declare("posterior/std", "pre-squash standard deviation of q_phi")
ENTROPY_FLOOR_WEIGHT = _declare(
    "entropy_floor/weight", "the entropy floor's weight exp(log_weight)"
)
VALUE_HEAD_SPREAD = _declare(
    "value/head_spread", "std over p_psi's K heads of mu at the replayed (s, a) (0 with one head)"
)
IMAGINED_REWARD_LOW = _declare(
    "imagination/reward_low",
    "1% quantile of the rewards imagined in Eq. 6 (moves the return range)",
)
IMAGINED_REWARD_HIGH = _declare(
    "imagination/reward_high",
    "99% quantile of the rewards imagined in Eq. 6 (moves the return range)",
)
POLICY_SATURATION = _declare(
    "policy/saturation", "share of pi_theta's mean action dims with |tanh(mean)| > 0.99"
)

# --- Learner: bookkeeping --------------------------------------------------------------------

UPDATE_STEPS_LIFETIME = _declare(
    "training/update_steps_lifetime", "update steps run by the RLModule so far (checkpointed)"
)
NORMALIZER_COUNT = _declare(
    "normalizer/count", "observations merged into the normaliser (equal on every Learner)"
)
MODEL_HOLDOUT_ERROR = _declare(
    "model/holdout_error", "held-out one-step MSE of f_hat's mean, over the elites, last ranking"
)
RETURN_LOW = _declare(
    "value/return_low", "low end of the return range p_psi is scaled and clipped by"
)
RETURN_HIGH = _declare(
    "value/return_high", "high end of the return range p_psi is scaled and clipped by"
)
MODEL_STATES = _declare("model_states/size", "imagined states held for Eq. 6's start states")
MODEL_RANKING_SKIPPED = _declare(
    "model/ranking_skipped", "ensemble rankings skipped for non-finite held-out errors"
)
MODEL_HOLDOUT_ERROR_ALL = _declare(
    "model/holdout_error_all_members", "held-out one-step MSE of f_hat's mean, over all members"
)

# --- Driver (DRIVE.training_step) ------------------------------------------------------------

REPLAY_SIZE = _declare("replay/size", "transitions held by the replay actor")
REPLAY_ROWS_REJECTED = _declare(
    "replay/rows_rejected", "rows dropped before storage (NaN/inf or beyond max_abs_value), so far"
)
REPLAY_ROWS_LOST = _declare(
    "replay/rows_lost", "rows lost when the replay actor crashed (added after its last snapshot)"
)
REPLAY_ROWS_IMPORTED = _declare(
    "replay/rows_imported",
    "rows read into the replay from config.offline_data(input_=...) before the first iteration",
)
REPLAY_RESTARTS = _declare("replay/restarts", "times Ray restarted the crashed replay actor")
REPLAY_PUSH_FAILURES = _declare(
    "replay/push_failures", "EnvRunner pushes that timed out (the driver then fails the run)"
)
SKIPPED_STEPS = _declare(
    "training/skipped_steps", "update steps skipped for a NaN/inf loss or gradient, so far"
)
WARMUP = _declare("training/warmup", "1.0 while random warm-up actions are taken, else 0.0")
UPDATE_STEPS = _declare("training/update_steps", "update steps run per Learner this iteration")

# --- RLlib's and Tune's result keys that DRIVE's tools read ----------------------------------

RETURN = _declare(
    "env_runners/episode_return_mean",
    "mean return of the last metrics_num_episodes_for_smoothing training episodes, however "
    "many EnvRunners and iterations they came from (DRIVE replaces RLlib's value)",
)
EPISODE_RETURNS = _declare(
    "env_runners/episode_returns",
    "returns of the episodes an EnvRunner finished since its last report (DRIVE's; the "
    "driver folds them into env_runners/episode_return_mean and drops the list)",
)
ENV_STEP_FAILURES = _declare(
    "env_runners/num_env_step_failures",
    "RLlib: env steps that raised, so far; each recreated its env and dropped its episode",
)
ENV_STEPS = _declare("num_env_steps_sampled_lifetime", "RLlib: env steps sampled so far")
ITERATION = _declare("training_iteration", "Tune: iterations run so far")
TIME_TOTAL = _declare("time_total_s", "Tune: wall seconds of the trial so far")
TIME_THIS_ITERATION = _declare("time_this_iter_s", "Tune: wall seconds of the last iteration")


def term_key(term: str) -> str:
    """The key of a loss term; KeyError names a term that has no key declared here."""
    try:
        return TERM_KEYS[term]
    except KeyError:
        raise KeyError(
            f"loss term {term!r} has no metric key: declare it in drive_rllib.keys"
        ) from None


def update_step_metrics(
    term_means: Mapping[str, Value], diagnostics: Mapping[str, Value], total: Value
) -> dict[str, Value]:
    """Everything the Learner logs for one update step, each under its declared key.

    Args:
        term_means: loss term name -> its (unweighted) batch mean.
        diagnostics: the core's diagnostics, already under their keys.
        total: the weighted sum of the terms (``combine_terms``).

    Raises:
        KeyError: a key that is not declared here, or one that two entries would share.
    """
    logged: dict[str, Value] = {}
    entries = [
        *((term_key(name), value) for name, value in term_means.items()),
        *diagnostics.items(),
        (LOSS_TOTAL, total),
    ]
    for key, value in entries:
        if key not in KEYS:
            raise KeyError(f"metric key {key!r} is not declared in drive_rllib.keys")
        if key in logged:
            raise KeyError(f"metric key {key!r} would be logged twice in one update step")
        logged[key] = value
    return logged


def nested_get(result: Mapping[str, Any], key: str) -> Any:
    """``result[a][b]`` for ``key="a/b"``, or a flat ``result["a/b"]``; None if absent."""
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
