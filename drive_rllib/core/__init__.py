"""The DRIVE method as a torch-only library: networks, imagination, one function per equation.

``spec`` (the settings, typed and checked), ``networks`` (every network and
statistic), ``imagine`` (H-step rollouts), ``distributions`` (closed forms),
``losses`` (one function per equation, their weights and their sum),
``update`` (one update step, as named steps).

Never imports ray (a test checks). Symbols used throughout: ``gamma``
discount, ``alpha`` temperature of p(O=1 | U) ∝ exp(U / alpha), ``tau`` Polyak
rate, ``H`` model horizon, ``N`` imagined samples per start state. Shapes:
``B`` batch, ``H`` horizon, ``N`` samples, ``E`` ensemble members, ``A``
action dim, ``S`` observation dim.
"""

from drive_rllib.core.distributions import (
    diag_gaussian_kl,
    gaussian_cross_entropy,
    gaussian_kl,
    moment_match,
    tanh_gaussian_log_prob,
    tanh_gaussian_rsample,
)
from drive_rllib.core.imagine import balanced_member_assignment, ensemble_step, imagine
from drive_rllib.core.losses import (
    combine_means,
    combine_terms,
    distill_terms,
    entropy_floor_terms,
    loss_weights,
    model_terms,
    posterior_terms,
    value_target_law,
    value_terms,
)
from drive_rllib.core.networks import (
    DRIVENetworks,
    DynamicsEnsemble,
    EntropyFloor,
    GaussianValue,
    RunningNormalizer,
    TanhGaussianPolicy,
    frozen_call,
)
from drive_rllib.core.spec import (
    ActingSpec,
    DRIVESpec,
    InferencePolicy,
    NetworkSpec,
    PolicyUpdate,
    Precision,
    UpdateSpec,
    ValueLoss,
)
from drive_rllib.core.update import update_loss, update_terms, value_target

__all__ = [
    "ActingSpec",
    "DRIVENetworks",
    "DRIVESpec",
    "DynamicsEnsemble",
    "EntropyFloor",
    "GaussianValue",
    "InferencePolicy",
    "NetworkSpec",
    "PolicyUpdate",
    "Precision",
    "RunningNormalizer",
    "TanhGaussianPolicy",
    "UpdateSpec",
    "ValueLoss",
    "balanced_member_assignment",
    "combine_means",
    "combine_terms",
    "diag_gaussian_kl",
    "distill_terms",
    "ensemble_step",
    "entropy_floor_terms",
    "frozen_call",
    "gaussian_cross_entropy",
    "gaussian_kl",
    "imagine",
    "loss_weights",
    "model_terms",
    "moment_match",
    "posterior_terms",
    "tanh_gaussian_log_prob",
    "tanh_gaussian_rsample",
    "update_loss",
    "update_terms",
    "value_target",
    "value_target_law",
    "value_terms",
]
