"""`DRIVEConfig.validate()`'s checks: one function per group of settings, each taking the config.

Each raises through ``config._value_error`` (RLlib's: a ValueError, or a warning
under ``config.experimental(_validate_config=False)``) with a message that says
what to change. The core's settings are checked by `drive_rllib.core.spec`
(``check_core_settings`` builds the spec); the checks here cover the Learner's
and the loop's settings, RLlib's settings DRIVE depends on, and the env's spaces.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from drive_rllib.algorithm.env_runner import DRIVEEnvRunner
from drive_rllib.algorithm.learner import GRADIENT_CHECKS, OPTIMIZER_IMPLEMENTATIONS
from drive_rllib.core.networks import DRIVENetworks
from drive_rllib.core.spec import Check, flag, integer, non_negative_number, positive_number
from drive_rllib.replay.storage import row_bytes

if TYPE_CHECKING:
    from drive_rllib.algorithm.config import DRIVEConfig

#: `sigma_min` below this makes log(sigma) and 1 / sigma^2 in Eq. 4 overflow in float32.
SIGMA_MIN_FLOOR = 1e-4
#: `check_memory` refuses a run that needs more than this share of the machine's memory.
MEMORY_SHARE = 0.8
FLOAT32_BYTES = 4


def _default(name: str) -> Any:
    """A setting's default, for the examples in error messages."""
    from drive_rllib.algorithm.config import DRIVEConfig  # config.py imports this module

    return getattr(DRIVEConfig(), name)


def check_resolved(config: DRIVEConfig, names: tuple[str, ...]) -> None:
    """No setting of ``names`` is a Tune search space (those resolve per trial)."""
    for name in names:
        value = getattr(config, name)
        unresolved_grid = isinstance(value, dict) and "grid_search" in value
        if unresolved_grid or type(value).__module__.startswith("ray.tune"):
            config._value_error(
                f"`{name}` is {value!r}, an unresolved search space. Pass the config "
                "to tune.Tuner (which resolves tune.grid_search / tune.choice per "
                "trial) instead of validating or building it directly."
            )


def check_finite_settings(config: DRIVEConfig) -> None:
    """Values the core's checks let through that break a run later (inf, tiny sigma)."""
    for name in (
        "alpha",
        "initial_entropy_weight",
        "model_lr",
        "posterior_lr",
        "prior_lr",
        "value_lr",
        "entropy_floor_lr",
    ):
        value = getattr(config, name)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            config._value_error(
                f"`{name}` must be a finite number, got {value!r}: e.g. "
                f"config.training({name}={_default(name)!r})."
            )
    sigma_min = config.sigma_min
    if isinstance(sigma_min, (int, float)) and 0 < sigma_min < SIGMA_MIN_FLOOR:
        config._value_error(
            f"`sigma_min` ({sigma_min}) is below {SIGMA_MIN_FLOOR}: log(sigma) and "
            "1 / sigma^2 of the value's Gaussian overflow in float32. Use "
            f"sigma_min >= {SIGMA_MIN_FLOOR} (default 0.1)."
        )
    if isinstance(config.num_env_runners, int) and config.num_env_runners < 0:
        config._value_error(
            f"`num_env_runners` must be >= 0, got {config.num_env_runners}: 0 samples in "
            "the driver process, N > 0 on N remote EnvRunners."
        )


def check_core_settings(config: DRIVEConfig) -> None:
    """H, N, gamma, alpha, the networks, ...: the checks of drive_rllib.core.spec."""
    try:
        config.to_spec()
    except ValueError as error:
        config._value_error(str(error))


def check_learner_settings(config: DRIVEConfig) -> None:
    """Learning rates, tau, the ensemble's ranking, the batch size."""
    for name in ("model_lr", "posterior_lr", "prior_lr", "value_lr", "entropy_floor_lr"):
        check_value(config, name, positive_number)
    if not isinstance(config.tau, (int, float)) or not 0.0 < config.tau <= 1.0:
        config._value_error(
            f"`tau` must lie in (0, 1], got {config.tau!r}: e.g. config.training(tau=0.005)."
        )
    check_value(config, "model_eval_interval", integer(minimum=0))
    check_value(config, "model_eval_batch_size", integer(minimum=1))
    check_value(config, "train_batch_size_per_learner", integer(minimum=1))
    check_value(config, "model_weight_decay", non_negative_number)
    check_value(config, "flush_denormals", flag)
    for name, choices in (
        ("optimizer_implementation", OPTIMIZER_IMPLEMENTATIONS),
        ("gradient_check", GRADIENT_CHECKS),
    ):
        if getattr(config, name) not in choices:
            config._value_error(
                f"`{name}` must be one of {choices}, got {getattr(config, name)!r}: e.g. "
                f"config.training({name}={choices[0]!r})."
            )


def check_loop_settings(config: DRIVEConfig) -> None:
    """Algorithm 1's T, C and warm-up; the replay's capacity, holdout and resources."""
    check_value(config, "updates_per_iteration", integer(minimum=1))
    check_value(config, "value_only_updates", integer(minimum=0))
    check_value(config, "restart_optimizers", flag)
    check_value(config, "env_steps_per_iteration", integer(minimum=1))
    check_value(config, "num_warmup_steps", integer(minimum=0))
    check_value(config, "warmup_catch_up", flag)
    check_value(config, "replay_capacity", integer(minimum=1))
    check_value(config, "holdout_every", integer(minimum=0))
    check_value(config, "lean_collection", flag)
    check_replay_actor_resources(config)
    check_holdout(config)
    check_reliability_settings(config)
    if (
        isinstance(config.replay_capacity, int)
        and isinstance(config.train_batch_size_per_learner, int)
        and config.replay_capacity < config.train_batch_size_per_learner
    ):
        config._value_error(
            f"`replay_capacity` ({config.replay_capacity}) is smaller than one batch "
            f"(`train_batch_size_per_learner`={config.train_batch_size_per_learner}): "
            "raise replay_capacity."
        )
    for name in ("model_batch_size", "posterior_batch_size"):
        rows = getattr(config, name)
        if (
            isinstance(rows, int)
            and isinstance(config.train_batch_size_per_learner, int)
            and rows > config.train_batch_size_per_learner
        ):
            config._value_error(
                f"`{name}` ({rows}) exceeds one batch "
                f"(`train_batch_size_per_learner`={config.train_batch_size_per_learner}): "
                f"lower {name} (0: the whole batch)."
            )


def check_reliability_settings(config: DRIVEConfig) -> None:
    """The replay actor's timeout and snapshots, the data checks' bounds."""
    check_value(config, "replay_snapshot_interval", integer(minimum=0))
    check_value(config, "max_skipped_updates", integer(minimum=1))
    for name in ("replay_timeout_s", "max_abs_value"):
        value = getattr(config, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < math.inf
        ):
            config._value_error(
                f"`{name}` must be a finite number > 0, got {value!r}: e.g. "
                f"config.training({name}={_default(name)!r})."
            )
    share = config.max_rejected_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        config._value_error(
            f"`max_rejected_share` must lie in [0, 1], got {share!r}: e.g. "
            "config.training(max_rejected_share=0.01) (1 never fails the run)."
        )


def check_replay_actor_resources(config: DRIVEConfig) -> None:
    resources = config.replay_actor_resources
    if resources is not None and not (
        isinstance(resources, dict)
        and all(
            isinstance(name, str)
            and isinstance(amount, (int, float))
            and not isinstance(amount, bool)
            and amount > 0
            for name, amount in resources.items()
        )
    ):
        config._value_error(
            "`replay_actor_resources` must be None or a dict of custom resource names "
            f"to positive amounts, e.g. {{'head': 0.01}}; got {resources!r}."
        )


def check_holdout(config: DRIVEConfig) -> None:
    if config.holdout_every == 1:
        config._value_error(
            "`holdout_every=1` would hold out every replay row and leave none to "
            "train on: use 0 (no holdout) or >= 2 (default 10)."
        )
    if config.holdout_every == 0 and config.model_eval_interval:
        config._value_error(
            "`holdout_every=0` leaves no held-out rows to rank the ensemble on: set "
            "`model_eval_interval=0` too, or use `holdout_every` >= 2."
        )


def check_value(config: DRIVEConfig, name: str, check: Check) -> None:
    """One setting against one of the core's checks (same messages as the spec's)."""
    try:
        check(name, getattr(config, name))
    except ValueError as error:
        config._value_error(str(error))


def check_rllib_settings(config: DRIVEConfig) -> None:
    if config.lr is not None:
        config._value_error(
            f"DRIVE has one learning rate per component; `lr` ({config.lr}) is unused. "
            "Set config.training(lr=None) and use model_lr, posterior_lr, prior_lr, "
            "value_lr and entropy_floor_lr."
        )
    if config._train_batch_size_per_learner is None:
        num_learners = max(config.num_learners, 1)
        if config.train_batch_size % num_learners:
            config._value_error(
                f"`train_batch_size` ({config.train_batch_size}) is not divisible by "
                f"`num_learners` ({num_learners}): set train_batch_size to a multiple "
                f"of {num_learners}, or set train_batch_size_per_learner instead."
            )
    if not config.normalize_actions:
        config._value_error(
            "DRIVE's policies act in [-1, 1] and the env sees its own bounds: set "
            "config.environment(normalize_actions=True)."
        )
    if config.env_runner_cls is not None and not (
        isinstance(config.env_runner_cls, type)
        and issubclass(config.env_runner_cls, DRIVEEnvRunner)
    ):
        config._value_error(
            f"`env_runner_cls` ({config.env_runner_cls}) must subclass DRIVEEnvRunner, "
            "which pushes transitions to the replay actor."
        )
    if config.is_multi_agent:
        config._value_error("DRIVE is single-agent: remove config.multi_agent(...).")
    if config.framework_str != "torch":
        config._value_error(
            f"DRIVE runs on torch only: set config.framework('torch'), not "
            f"{config.framework_str!r}."
        )


def check_torch_compile(config: DRIVEConfig) -> None:
    """RLlib's ``torch_compile_learner``: DRIVE compiles the RLModule's update step
    (called by ``forward_train``) on one Learner (`DRIVETorchLearner.build`)."""
    check_value(config, "torch_compile_learner", flag)
    if not config.torch_compile_learner:
        return
    if config.torch_compile_learner_what_to_compile != "forward_train":
        config._value_error(
            "`torch_compile_learner_what_to_compile` must be 'forward_train' for DRIVE, "
            f"got {config.torch_compile_learner_what_to_compile!r}: DRIVE's update calls "
            "the replay actor and moves statistics between the steps, which "
            "'complete_update' cannot trace. Use config.framework("
            "torch_compile_learner_what_to_compile='forward_train')."
        )
    if config.num_learners > 1:
        config._value_error(
            f"`torch_compile_learner` with `num_learners` ({config.num_learners}) > 1: "
            "RLlib 2.60 does not compile modules wrapped in DistributedDataParallel. "
            "Use num_learners=0 or 1, or config.framework(torch_compile_learner=False)."
        )


def check_env_spaces(config: DRIVEConfig) -> tuple[gym.Space, gym.Space]:
    """The env's spaces: a flat Box of finite actions, a flat Box of observations.

    Returns:
        (observation space, action space), for the checks that size from them.
    """
    observation_space, action_space = config.env_spaces()
    if not isinstance(action_space, gym.spaces.Box):
        config._value_error(
            f"DRIVE needs a continuous (Box) action space; env {config.env!r} has "
            f"{action_space}. Use an environment with continuous actions (e.g. "
            "Pendulum-v1) or wrap the env to expose a Box action space."
        )
        return observation_space, action_space
    if len(action_space.shape) != 1:
        config._value_error(
            f"DRIVE needs a flat (1-D) Box action space; env {config.env!r} has shape "
            f"{action_space.shape}. Flatten the actions with a wrapper."
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        config._value_error(
            f"DRIVE rescales actions from [-1, 1] to the env's bounds, so they must be "
            f"finite; env {config.env!r} has low={action_space.low}, high="
            f"{action_space.high}. Wrap the env with gymnasium.wrappers.ClipAction "
            "and a bounded Box, or give the env finite action bounds."
        )
    target = config.target_entropy
    action_dim = int(np.prod(action_space.shape))
    if (
        isinstance(target, (int, float))
        and not isinstance(target, bool)
        and not -10 * action_dim <= target <= action_dim
    ):
        config._value_error(
            f"`target_entropy` ({target}) lies outside [-10 A, A] = [{-10 * action_dim}, "
            f"{action_dim}] for this env's A={action_dim} actions: the entropy floor's "
            "weight would grow or vanish without bound. Use None (-A) or a value in "
            "that range."
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        config._value_error(
            f"DRIVE's MLPs need a flat Box observation space; env {config.env!r} has "
            f"{observation_space}. Flatten observations with "
            "gymnasium.wrappers.FlattenObservation."
        )
    return observation_space, action_space


def machine_memory_bytes() -> int | None:
    """This machine's total memory (psutil where installed, else sysconf); None if unknown."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().total)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class MemoryNeeds:
    """Bytes a run holds, from the spaces and settings (`memory_needs`).

    Attributes:
        replay: the replay's arrays at ``replay_capacity`` rows.
        model_states: one Learner's model-state buffer (``model_state_capacity`` x S float32).
        networks: one Learner's networks while training: parameters and buffers,
            gradients and Adam's two moments of the trainable parameters.
        num_learners: Learners, each holding the model-state buffer and the networks.
        checkpoint: one checkpoint on disk: ``replay.npz`` of a full replay, the
            module state (parameters, buffers, the model-state buffer) and the
            optimizers' states.
    """

    replay: int
    model_states: int
    networks: int
    num_learners: int
    checkpoint: int

    @property
    def total(self) -> int:
        """The run's peak: the replay twice (a checkpoint copies its rows before
        writing them) and each Learner's buffer and networks."""
        return 2 * self.replay + self.num_learners * (self.model_states + self.networks)


def memory_needs(
    config: DRIVEConfig, observation_space: gym.spaces.Box, action_space: gym.spaces.Box
) -> MemoryNeeds:
    """Sizes the replay, the model-state buffer, the networks and a checkpoint.

    The networks are built on torch's "meta" device: shapes only, no memory.
    """
    spec = config.to_spec()
    obs_dim = int(np.prod(observation_space.shape))
    action_dim = int(np.prod(action_space.shape))
    with torch.device("meta"):
        networks = DRIVENetworks(obs_dim, action_dim, spec.networks, 0)
    parameters = sum(p.numel() for p in networks.parameters())
    trainable = sum(p.numel() for p in networks.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in networks.buffers())
    model_states = spec.update.model_state_capacity * obs_dim * FLOAT32_BYTES
    replay = config.replay_capacity * row_bytes(obs_dim, action_dim)
    module_state = (parameters + buffers) * FLOAT32_BYTES + model_states
    return MemoryNeeds(
        replay=replay,
        model_states=model_states,
        networks=(parameters + buffers + 3 * trainable) * FLOAT32_BYTES,
        num_learners=max(1, config.num_learners),
        checkpoint=replay + module_state + 2 * trainable * FLOAT32_BYTES,
    )


def check_memory(
    config: DRIVEConfig,
    observation_space: gym.Space,
    action_space: gym.Space,
    available: int | None = None,
) -> None:
    """Refuses a run whose replay, model-state buffers and networks would exceed
    `MEMORY_SHARE` of this machine's memory (they are allocated in full at start
    and would be OOM-killed, or the replay would fill it late in the run).

    The check uses the memory of the machine that validates (the driver's). On a
    cluster the replay actor and the Learners may live on other nodes: the check
    is skipped when ``replay_actor_resources`` pins the actor to a node.

    Args:
        config: the config.
        observation_space: the env's (a flat Box; other spaces are left to
            `check_env_spaces`).
        action_space: the env's (a flat Box).
        available: bytes of memory to check against (default: `machine_memory_bytes`).
    """
    if config.replay_actor_resources is not None:
        return
    flat_boxes = all(
        isinstance(space, gym.spaces.Box) and len(space.shape) == 1
        for space in (observation_space, action_space)
    )
    if not flat_boxes or not isinstance(config.replay_capacity, int):
        return
    available = machine_memory_bytes() if available is None else available
    if available is None:
        return
    try:
        needs = memory_needs(config, observation_space, action_space)
    except ValueError:  # check_core_settings names the bad setting
        return
    if needs.total <= MEMORY_SHARE * available:
        return
    update = config.to_spec().update
    parts = {
        "the model-state buffer": needs.num_learners * needs.model_states,
        "the replay": 2 * needs.replay,
        "the networks": needs.num_learners * needs.networks,
    }
    largest = max(parts, key=parts.get)
    lower = {
        "the model-state buffer": (
            f"lower model_state_rounds ({update.model_state_rounds}) or "
            f"distribution_rollout_batch ({update.distribution_rollout_batch})"
        ),
        "the replay": f"lower replay_capacity ({config.replay_capacity})",
        "the networks": "lower the hidden sizes or ensemble_size",
    }[largest]
    config._value_error(
        f"This run needs about {_gigabytes(needs.total)} of memory, more than "
        f"{MEMORY_SHARE:.0%} of this machine's {_gigabytes(available)}: the model-state "
        f"buffer {_gigabytes(needs.model_states)} per Learner x {needs.num_learners} "
        f"({update.model_state_capacity} states of {observation_space.shape[0]} floats), "
        f"the replay {_gigabytes(needs.replay)} ({config.replay_capacity} rows; twice while "
        f"a checkpoint copies it), the networks {_gigabytes(needs.networks)} per Learner; "
        f"each checkpoint takes about {_gigabytes(needs.checkpoint)} on disk. Most of it is "
        f"{largest}: {lower}."
    )


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB"
