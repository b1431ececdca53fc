"""The core's settings as frozen, validated dataclasses: one `DRIVESpec` from config to core.

| class           | what                                                             | used by                 |
|-----------------|------------------------------------------------------------------|-------------------------|
| `NetworkSpec`   | sizes of f_hat, psi, pi_theta, q_phi; termination head; floor   | `DRIVENetworks`          |
| `UpdateSpec`    | one update step: H, N, gamma, alpha, policy update, value loss   | `update_terms`, weights  |
| `ActingSpec`    | which policy's mean acts when not exploring                      | the RLModule             |
| `DRIVESpec`     | the three together; ``to_dict`` / ``from_dict`` for model_config | RLModule, Learner        |

Every field is checked once, when its dataclass is built (``__post_init__``),
with the message ``DRIVEConfig.validate()`` shows; choices become `Enum`
members (they compare equal to their strings), widths become tuples.

Adding a setting takes one field in one dataclass below (its default, type,
check and a line in the class docstring) and its keyword in
``DRIVEConfig.training()``: the config takes its default from here, passes
it to the RLModule inside the spec, and a test checks that the keywords and
the fields match. Field names are unique across the three parts (the config
has one flat namespace).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar

import numpy as np

# --- choices ----------------------------------------------------------------------------------


class PolicyUpdate(str, Enum):
    """How pi_theta is trained (spec, Section 4)."""

    JOINT = "joint"  # theta by Eq. 6, together with phi
    DISTILL = "distill"  # phi by Eq. 6 with theta fixed, then theta by Eq. 5


class ValueLoss(str, Enum):
    """How psi is fitted to Eq. 4's target law (spec, Section 6, "value scale")."""

    SPLIT = "split"  # mean by squared error, sigma by cross-entropy with the mean fixed
    CROSS_ENTROPY = "cross_entropy"  # Eq. 4 as written


class Activation(str, Enum):
    """The hidden-layer activation of the dynamics ensemble."""

    RELU = "relu"
    SILU = "silu"  # as MBPO and DHMBPO


class Aggregate(str, Enum):
    """How the K value heads' Gaussians become the one p_psi a consumer reads.

    With one head every choice is that head.
    """

    MEAN = (
        "mean"  # the moment-matched mixture of the heads (mean of mu; variance adds their spread)
    )
    MIN2 = "min2"  # of two heads drawn at random, the one with the lower mu (REDQ, DHMBPO)


class Precision(str, Enum):
    """The arithmetic of the update step's forward pass (and so of its backward)."""

    FLOAT32 = "float32"  # every op in float32
    # Mixed precision: the networks' layers (matmuls, norms, activations) in bfloat16
    # under torch.autocast; their outputs, rollout states, losses, parameters and
    # optimizer states in float32.
    BFLOAT16 = "bfloat16"
    # bfloat16 where the device computes it natively (a CPU with AMX-BF16 or
    # AVX512-BF16, a GPU with bf16 support), else float32 (`resolve_precision`).
    AUTO = "auto"


class Termination(str, Enum):
    """Where imagined rollouts stop (spec, Section 6, "termination")."""

    AUTO = "auto"  # the known rule when one is given (``termination_rule``), else learned
    LEARNED = "learned"  # f_hat's termination head, fitted to the real ``terminated`` flags
    KNOWN = "known"  # the task's own rule on the next observation (``core/termination.py``)
    NONE = "none"  # nothing terminates


class InferencePolicy(str, Enum):
    """The policy whose deterministic mean acts when not exploring (evaluation)."""

    PRIOR = "prior"  # pi_theta
    POSTERIOR = "posterior"  # q_phi


# --- checks: (name, value) -> the value to store; ValueError says what to change -------------
# A wrong type is a ValueError too, as in RLlib's `AlgorithmConfig.validate()`, so that one
# `except ValueError` catches every bad setting.

Check = Callable[[str, Any], Any]


def integer(minimum: int) -> Check:
    """An int (or numpy integer, stored as int) >= ``minimum``."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"`{name}` must be an integer, got {value!r}.")  # noqa: TRY004
        if value < minimum:
            raise ValueError(
                f"`{name}` must be >= {minimum}, got {value}: set "
                f"config.training({name}={max(minimum, 1)}) or larger."
            )
        return int(value)

    return check


def non_negative_number(name: str, value: Any) -> Any:
    """A finite number >= 0 (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    return value


def positive_number(name: str, value: Any) -> Any:
    """A number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")
    return value


def discount(name: str, value: Any) -> Any:
    """A number in (0, 1]."""
    if not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(
            f"`{name}` must lie in (0, 1], got {value!r}: e.g. config.training({name}=0.99)."
        )
    return value


def flag(name: str, value: Any) -> bool:
    """True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")  # noqa: TRY004
    return value


def widths(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty list or tuple of positive int layer widths, stored as a tuple."""
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in value)
    ):
        raise ValueError(
            f"`{name}` must be a non-empty list of positive layer widths, e.g. "
            f"[256, 256]; got {value!r}."
        )
    return tuple(value)


def rate(name: str, value: Any) -> Any:
    """A number in (0, 1], e.g. a per-step averaging rate."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"`{name}` must lie in (0, 1], got {value!r}: e.g. 3e-4.")
    return value


def unit_fraction(name: str, value: Any) -> Any:
    """A number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {value!r}.")
    return value


def optional_finite_number(name: str, value: Any) -> Any:
    """None or a finite number."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise ValueError(f"`{name}` must be a finite number or None (-A), got {value!r}.")
    return value


def per_dim_entropy(name: str, value: Any) -> Any:
    """A number in [-10, 1] (an entropy per action dim: the floor's weight would grow or
    vanish without bound outside it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -10 <= value <= 1:
        raise ValueError(f"`{name}` must be a number in [-10, 1], got {value!r}.")
    return value


def optional_callable(name: str, value: Any) -> Any:
    """None or a callable."""
    if value is not None and not callable(value):
        raise ValueError(f"`{name}` must be a callable or None, got {value!r}.")
    return value


def one_of(choices: type[Enum]) -> Check:
    """A member of ``choices`` or its value (a string), stored as the member."""
    options = tuple(member.value for member in choices)

    def check(name: str, value: Any) -> Enum:
        try:
            return choices(value)
        except (ValueError, TypeError):
            raise ValueError(
                f"`{name}` must be one of {options}, got {value!r}: set "
                f"config.training({name}={options[0]!r})."
            ) from None

    return check


def setting(default: Any, check: Check) -> Any:
    """A spec field: its default and the check that runs when the spec is built."""
    return field(default=default, metadata={"check": check})


# --- the parts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    """Runs every field's check once, on construction, then ``_check_together``."""

    def __post_init__(self) -> None:
        for spec_field in fields(self):
            value = spec_field.metadata["check"](spec_field.name, getattr(self, spec_field.name))
            object.__setattr__(self, spec_field.name, value)
        self._check_together()

    def _check_together(self) -> None:
        """Checks that span fields (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (Enum values as strings, widths as lists), e.g. for JSON."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True)
class NetworkSpec(_Checked):
    """Sizes and options of the networks (`DRIVENetworks`).

    Attributes:
        ensemble_size: E, members of the dynamics ensemble f_hat.
        num_elites: members used in rollouts (the best on held-out data), <= E.
        model_hiddens: hidden widths of each ensemble member.
        policy_hiddens: hidden widths of pi_theta and of q_phi.
        value_hiddens: hidden widths of psi (and psi_bar).
        sigma_min: lower bound > 0 of p_psi's sigma, also the floor of the target
            law's standard deviation in J_KL2.
        termination: where imagined rollouts (Eq. 6, Eq. 4's target, distribution
            rollouts) stop (`Termination`): "learned" fits f_hat's termination head;
            "known" applies ``termination_rule`` to every imagined next state; "none";
            "auto" is "known" when a rule is given, else "learned". A terminated step's
            reward counts; everything after it (rewards, bootstrap) is masked, and
            distribution rollouts keep no state past it (so Eq. 6 starts from live
            states only).
        termination_rule: the known rule, next_obs [M, S] -> bool [M] (True: the
            episode ends); ``DRIVEConfig`` fills it from the env's registered rule
            (`drive_rllib.core.termination`) when termination is "auto" or "known".
        entropy_floor: add the entropy floor on pi_theta (its own learnable weight).
        target_entropy: the floor's target entropy; None means
            ``target_entropy_per_dim`` x A (A action dims).
        target_entropy_per_dim: the target per action dim where ``target_entropy``
            is None, in [-10, 1] (-1: SAC's -A; MBPO's per-task targets are about
            -A / 2 on Hopper, Walker2d, Ant and HalfCheetah).
        initial_entropy_weight: the floor's initial weight > 0.
        model_layer_norm: layer normalisation (no affine) before every layer of
            f_hat but the first; it keeps the hidden activations of inputs far
            from the data (saturated imagined actions) bounded.
        model_activation: f_hat's hidden activation (`Activation`).
        model_normalize_targets: f_hat predicts (s' - s, r) standardised by
            running statistics of the data (``target_normalizer``), so every
            output dim weighs alike in its likelihood.
        value_heads: K >= 1 Gaussian heads of p_psi (and psi_bar), each its own
            MLP, each fitted by Eq. 4; consumers read an aggregate of them
            (`UpdateSpec.value_target_aggregate`, ``value_policy_aggregate``).
        value_layer_norm: layer normalisation (no affine) before every layer of
            psi but the first.
        return_range_absorbing: where imagined rollouts can end (``termination``
            learned, or a known rule), the return range also spans 0, the value of
            the absorbing state after a fall; else (and always when False) it spans
            the returns of the low and high rewards earned forever, which clips
            Eq. 4's targets near a fall up to the returns of survival.
        value_scaled: psi's outputs live in units of the return range
            (``return_range``): mu = center + width * raw, sigma = sigma_min +
            width * softplus(raw); the last layer starts at zero (mu = center).
    """

    ensemble_size: int = setting(7, integer(minimum=1))
    num_elites: int = setting(5, integer(minimum=1))
    model_hiddens: tuple[int, ...] = setting((200, 200, 200), widths)
    policy_hiddens: tuple[int, ...] = setting((256, 256), widths)
    value_hiddens: tuple[int, ...] = setting((256, 256), widths)
    sigma_min: float = setting(0.1, positive_number)
    termination: Termination = setting(Termination.AUTO, one_of(Termination))
    termination_rule: Callable[[Any], Any] | None = setting(None, optional_callable)
    entropy_floor: bool = setting(True, flag)
    target_entropy: float | None = setting(None, optional_finite_number)
    target_entropy_per_dim: float = setting(-1.0, per_dim_entropy)
    initial_entropy_weight: float = setting(1.0, positive_number)
    model_layer_norm: bool = setting(True, flag)
    model_activation: Activation = setting(Activation.SILU, one_of(Activation))
    model_normalize_targets: bool = setting(True, flag)
    value_heads: int = setting(5, integer(minimum=1))
    value_layer_norm: bool = setting(True, flag)
    value_scaled: bool = setting(True, flag)
    return_range_absorbing: bool = setting(True, flag)

    def _check_together(self) -> None:
        if self.termination is Termination.KNOWN and self.termination_rule is None:
            raise ValueError(
                "`termination` is 'known' but no termination rule is given or registered "
                "for this env: register one (drive_rllib.core.termination."
                "register_termination), pass config.training(termination_rule=...), or set "
                "termination='learned'."
            )
        if self.num_elites > self.ensemble_size:
            raise ValueError(
                f"`num_elites` ({self.num_elites}) must not exceed `ensemble_size` "
                f"({self.ensemble_size}): lower num_elites or raise ensemble_size."
            )

    @property
    def known_rule(self) -> Callable[[Any], Any] | None:
        """The rule imagination applies ("known", or "auto" with a rule), else None."""
        if self.termination in (Termination.KNOWN, Termination.AUTO):
            return self.termination_rule
        return None

    @property
    def learn_termination(self) -> bool:
        """Whether f_hat's termination head is fitted and read ("learned", or "auto"
        without a rule)."""
        return self.termination is Termination.LEARNED or (
            self.termination is Termination.AUTO and self.termination_rule is None
        )


@dataclass(frozen=True)
class UpdateSpec(_Checked):
    """One update step (`update_terms`, `loss_weights`; spec, Section 4).

    Attributes:
        horizon: H >= 1 imagined model steps in Eq. 6 (Eq. 4: the real first
            step and H - 1 imagined ones).
        num_samples: N >= 1 imagined trajectories per start state.
        gamma: discount in (0, 1].
        alpha: temperature > 0 of p(O=1 | U) ∝ exp(U / alpha); J_U is weighted -1 / alpha.
        policy_update: how pi_theta is trained (`PolicyUpdate`).
        value_loss: how psi is fitted (`ValueLoss`).
        member_per_trajectory: keep one elite member per imagined trajectory in
            Eq. 6 (default: a random elite member at every model step).
        value_target_aggregate: the p_psi_bar that bootstraps Eq. 4's target
            law (`Aggregate`; pessimistic by default).
        value_policy_aggregate: the p_psi of Eq. 6 (bootstrap of m_i, and the
            law J_KL2 compares against) (`Aggregate`).
        value_bounds: clip Eq. 4's target means to the return range
            [low, high] / (1 - gamma) of ``return_range``.
        return_range_rate: rate in (0, 1] at which the return range moves, per
            update step, toward the 1% / 99% quantiles of the rewards imagined
            in Eq. 6 (the current policy's rewards).
        start_state_model_fraction: share in [0, 1] of Eq. 6's start states
            drawn from the model-state buffer (the rest: the batch's real states).
        value_horizon: model steps of Eq. 4's target law, counting the first
            (real) step: the real step and ``value_horizon`` - 1 imagined ones
            (0: H, as the spec states it; 1: the one-step distributional TD target).
        value_head_bootstrap: each of p_psi's K heads fits Eq. 4 on its own bootstrap
            of the batch's rows (row weights: how often a draw of B rows with
            replacement picked the row), meant to pull apart heads that start equal
            (zeroed last layer) and share the targets, so that "min2" reads a lower
            one; on Hopper-v5 it did not (docs/diagnosis.md).
        termination_gradient_width: > 0: where a known rule ends imagined rollouts,
            Eq. 6 differentiates its 0/1 mask as sigmoid(margin / width), the margin
            being the next state's distance to the rule's nearest bound
            (`drive_rllib.core.termination.smoothed_continue`); the mask's value is
            unchanged. 0: the mask has no gradient (a fall within H moves Eq. 6's
            value, never its gradient). Inert without a rule that has a margin.
        entropy_floor_real_states: apply the entropy floor at the batch's real
            states (where pi_theta acts) instead of at Eq. 6's start states (model
            states under ``start_state_model_fraction`` 1, where pi_theta never acts).
        entropy_floor_recent_rows: > 0: apply the entropy floor at real states drawn
            from the last this many rows the replay received (the batch's
            ``recent_obs``, which the algorithm adds), where pi_theta acts now,
            instead of at the batch's rows (the replay's whole history, whose old
            states no other term trains pi_theta on, so the floor can meet its
            target there while pi_theta's entropy where it acts sits far below it:
            docs/diagnosis.md). 0: off (then ``entropy_floor_real_states`` decides).
        entropy_in_returns: soft returns, as SAC's and DHMBPO's: every action pi_theta
            draws in an imagined rollout (Eq. 6's later actions and its bootstrap's,
            Eq. 4's target actions) adds -beta log pi_theta(a | s) to the reward of its
            step, masked after a fall as rewards are; beta is the entropy floor's
            weight (held fixed in the rollouts), so p_psi models the return plus the
            entropy pi_theta will have. Needs the entropy floor.
        value_model_fraction: share in [0, 1] of Eq. 4's rows taken from the
            model-state buffer instead of the batch's last real transitions: a state
            s of a distribution rollout with a ~ pi_theta(s), its target law from H
            imagined steps (the first one imagined too) bootstrapped as the real
            rows' are. DHMBPO fits its critic on such states only. While the buffer
            is empty those rows are the batch's own states with a ~ pi_theta.
        distribution_rollout_interval: update steps between distribution
            rollouts (0: none): ``distribution_rollout_batch`` replayed states
            rolled out ``distribution_rollout_horizon`` steps in f_hat under
            pi_theta, every visited state kept in the model-state buffer
            (DHMBPO's start states). Needs > 0 when start_state_model_fraction or
            value_model_fraction > 0.
        distribution_rollout_horizon: model steps >= 1 of one distribution rollout.
        distribution_rollout_batch: start states >= 1 of one distribution rollout
            (split over the Learners).
        model_state_rounds: distribution rollouts >= 1 the model-state buffer holds.
        model_fit_interval: f_hat takes its gradient step on every k-th update step
            only (1: on every step); the other steps hold f_hat and its optimizer
            as they are (``held_model_terms``). DHMBPO and MBPO fit the model far
            less often than the actor; what a larger k costs in return is in
            docs/diagnosis.md.
        model_fit_interval_start: update steps >= 0, counted from the first, that
            fit f_hat on every step before ``model_fit_interval`` applies (e.g.
            ``num_warmup_steps``: the warm-up catch-up fits on every step).
        model_batch_size: rows of each member's bootstrap in f_hat's fit per update
            step (0: as many as the batch has rows); at most the batch's rows. Fewer
            rows cut the fit's forward and backward in proportion (about a third of
            the step's arithmetic); every member still takes a gradient step on every
            fitting step, on a noisier estimate (its cost in return:
            docs/diagnosis.md).
        posterior_batch_size: Eq. 6's start states per update step (0: as many as
            the batch has rows); at most the batch's rows. Fewer start states cut
            Eq. 6's rollouts, forward and backward, in proportion (the step's
            largest part); f_hat and Eq. 4 still see the whole batch (its cost in
            return: docs/diagnosis.md). Not with ``member_per_trajectory``, whose
            member draw has one row per batch row.
        precision: the update step's arithmetic (`Precision`). "bfloat16" runs the
            layers of every network in bfloat16 (``torch.autocast``): on a CPU with
            AMX or AVX512-BF16, or a GPU with bf16 tensor cores, their matmuls take
            a fraction of the float32 time. Their outputs, rollout states, losses,
            parameters and optimizer states stay float32. On a CPU without bf16
            support it is emulated and slower; "auto" (the default) picks bfloat16
            only where the device has it.
    """

    horizon: int = setting(5, integer(minimum=1))
    num_samples: int = setting(1, integer(minimum=1))
    gamma: float = setting(0.99, discount)
    alpha: float = setting(1.0, positive_number)
    policy_update: PolicyUpdate = setting(PolicyUpdate.JOINT, one_of(PolicyUpdate))
    value_loss: ValueLoss = setting(ValueLoss.SPLIT, one_of(ValueLoss))
    member_per_trajectory: bool = setting(False, flag)
    value_target_aggregate: Aggregate = setting(Aggregate.MIN2, one_of(Aggregate))
    value_policy_aggregate: Aggregate = setting(Aggregate.MEAN, one_of(Aggregate))
    value_bounds: bool = setting(True, flag)
    return_range_rate: float = setting(3e-4, rate)
    start_state_model_fraction: float = setting(1.0, unit_fraction)
    value_model_fraction: float = setting(0.0, unit_fraction)
    entropy_floor_real_states: bool = setting(False, flag)
    entropy_floor_recent_rows: int = setting(0, integer(minimum=0))
    entropy_in_returns: bool = setting(False, flag)
    termination_gradient_width: float = setting(0.0, non_negative_number)
    value_horizon: int = setting(0, integer(minimum=0))
    value_head_bootstrap: bool = setting(False, flag)
    distribution_rollout_interval: int = setting(20, integer(minimum=0))
    distribution_rollout_horizon: int = setting(20, integer(minimum=1))
    distribution_rollout_batch: int = setting(256, integer(minimum=1))
    model_state_rounds: int = setting(10, integer(minimum=1))
    model_fit_interval: int = setting(1, integer(minimum=1))
    model_fit_interval_start: int = setting(0, integer(minimum=0))
    model_batch_size: int = setting(0, integer(minimum=0))
    posterior_batch_size: int = setting(0, integer(minimum=0))
    precision: Precision = setting(Precision.AUTO, one_of(Precision))

    def _check_together(self) -> None:
        if self.start_state_model_fraction > 0 and self.distribution_rollout_interval == 0:
            raise ValueError(
                f"`start_state_model_fraction` ({self.start_state_model_fraction}) draws Eq. 6's "
                "start states from the model-state buffer, which only distribution rollouts "
                "fill: set distribution_rollout_interval > 0 (e.g. 20) or "
                "start_state_model_fraction=0."
            )
        if self.value_model_fraction > 0 and self.distribution_rollout_interval == 0:
            raise ValueError(
                f"`value_model_fraction` ({self.value_model_fraction}) draws Eq. 4's rows "
                "from the model-state buffer, which only distribution rollouts fill: set "
                "distribution_rollout_interval > 0 (e.g. 20) or value_model_fraction=0."
            )
        if self.posterior_batch_size and self.member_per_trajectory:
            raise ValueError(
                f"`posterior_batch_size` ({self.posterior_batch_size}) draws fewer Eq. 6 start "
                "states than `member_per_trajectory` assigns members to: set "
                "posterior_batch_size=0 or member_per_trajectory=False."
            )

    @property
    def eq4_horizon(self) -> int:
        """Model steps of Eq. 4's target law, counting the first: ``value_horizon`` or H."""
        return self.value_horizon or self.horizon

    @property
    def model_state_capacity(self) -> int:
        """States the model-state buffer holds: every state of ``model_state_rounds`` rollouts."""
        if not self.distribution_rollout_interval:
            return 0
        per_round = self.distribution_rollout_batch * (self.distribution_rollout_horizon + 1)
        return self.model_state_rounds * per_round


@dataclass(frozen=True)
class ActingSpec(_Checked):
    """How the RLModule acts.

    Attributes:
        inference_policy: the policy whose mean acts when not exploring (`InferencePolicy`).
    """

    inference_policy: InferencePolicy = setting(InferencePolicy.PRIOR, one_of(InferencePolicy))


@dataclass(frozen=True)
class DRIVESpec:
    """Everything the core and the RLModule need, in three checked parts."""

    networks: NetworkSpec = field(default_factory=NetworkSpec)
    update: UpdateSpec = field(default_factory=UpdateSpec)
    acting: ActingSpec = field(default_factory=ActingSpec)

    #: The part classes, by attribute name.
    PARTS: ClassVar[dict[str, type[_Checked]]] = {
        "networks": NetworkSpec,
        "update": UpdateSpec,
        "acting": ActingSpec,
    }

    def __post_init__(self) -> None:
        if self.update.entropy_in_returns and not self.networks.entropy_floor:
            raise ValueError(
                "`entropy_in_returns` weights the entropy in imagined returns by the "
                "entropy floor's weight, and entropy_floor is off: set entropy_floor=True "
                "or entropy_in_returns=False."
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"networks": {...}, "update": {...}, "acting": {...}}`` of plain values."""
        return {name: getattr(self, name).to_dict() for name in self.PARTS}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> DRIVESpec:
        """The spec ``to_dict`` wrote (checked again)."""
        unknown = set(data) - set(cls.PARTS)
        if unknown:
            raise ValueError(f"unknown DRIVESpec parts {sorted(unknown)}")
        return cls(**{name: part(**data.get(name, {})) for name, part in cls.PARTS.items()})

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """Every field of every part, in order: the config's names for them."""
        names = tuple(f.name for part in cls.PARTS.values() for f in fields(part))
        if len(set(names)) != len(names):
            raise TypeError(f"DRIVESpec parts share a field name: {names}")
        return names

    @classmethod
    def from_settings(cls, source: Any, **overrides: Any) -> DRIVESpec:
        """The spec of an object that has every setting as an attribute (a DRIVEConfig),
        with ``overrides`` (settings by name) in place of the attributes they name.

        Raises:
            ValueError: a value fails its check (the message says what to change).
        """

        def value(name: str) -> Any:
            return overrides[name] if name in overrides else getattr(source, name)

        return cls(
            **{
                name: part(**{f.name: value(f.name) for f in fields(part)})
                for name, part in cls.PARTS.items()
            }
        )

    def settings(self) -> dict[str, Any]:
        """Every setting by its name, as plain values (the config's defaults come from here)."""
        return {name: value for part in self.to_dict().values() for name, value in part.items()}
