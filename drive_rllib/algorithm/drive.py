"""`DRIVEConfig` (every setting, its default and its checks), `DRIVE` (the Algorithm), `register()`.

The config and the Algorithm share one module, as in RLlib's own algorithms:
each names the other (``DRIVEConfig().algo_class`` is `DRIVE`,
``DRIVE.get_default_config()`` a `DRIVEConfig`).

Symbols (as in the spec): ``H`` model horizon, ``N`` imagined samples per
start state, ``gamma`` discount, ``alpha`` temperature of
p(O=1 | U) ∝ exp(U / alpha), ``tau`` Polyak rate of the target value net,
``E`` ensemble members, ``C`` update steps and ``T`` env steps per iteration.

Settings: the core's (H, N, gamma, alpha, network sizes, ...) are the fields
of `drive_rllib.core.DRIVESpec`, which holds their defaults and checks;
``to_spec()`` builds the spec and the RLModule receives it (serialised) in
its ``model_config``. The Learner's and the loop's settings are checked here.

Data flow of one iteration of `DRIVE` (``training_step``, Algorithm 1 of the spec):

1. The EnvRunners step their envs for ``env_steps_per_iteration`` (T) steps in
   total -- uniformly random actions in [-1, 1] during warm-up, pi_theta
   afterwards -- and each pushes its transitions to the replay actor; the
   driver receives only their metrics.
2. Once the replay holds ``num_warmup_steps`` rows (and at least one batch),
   the driver asks the replay actor for one batch of C x B rows per Learner
   (C = ``updates_per_iteration``, B = ``train_batch_size_per_learner``),
   made into RLlib's learner batch inside the actor's process
   (`drive_rllib.algorithm.batch`), and passes the ObjectRefs to
   ``learner_group.update(batch_refs=...,
   minibatch_size=B)``: each Learner resolves its own ref and runs C update
   steps. The driver holds refs only (with ``num_learners=0`` the Learner lives
   in the driver process).
3. The EnvRunners receive the new inference-only weights (pi_theta and the
   normaliser).

The replay actor is created in ``setup`` (0 CPUs, no resource bundle needed)
and handed to every EnvRunner and Learner, and again to EnvRunners that RLlib
restores after a failure. Its contents are written next to every checkpoint
(``replay.npz``) and loaded on restore.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow.fs
import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.env_runner_group import EnvRunnerGroup
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)
from ray.tune.execution.placement_groups import PlacementGroupFactory

from drive_rllib import keys
from drive_rllib.algorithm.batch import sample_learner_batch
from drive_rllib.algorithm.checkpoint import (
    REPLAY_FILE,
    atomic_directory,
    check_complete,
    filesystem_and_path,
    newest_complete_checkpoint,
    read_marker,
    save_replay,
    write_marker,
)
from drive_rllib.algorithm.checkpoint import restore_replay as restore_replay_file
from drive_rllib.algorithm.env_runner import DRIVEEnvRunner, observation_scale
from drive_rllib.algorithm.learner import (
    GRADIENT_CHECKS,
    OPTIMIZER_IMPLEMENTATIONS,
    DRIVETorchLearner,
)
from drive_rllib.algorithm.notices import Notifier, UpdateProgress, heartbeat, long_step
from drive_rllib.algorithm.returns import RecentReturns, smooth_returns
from drive_rllib.algorithm.rl_module import SPEC_KEY, DRIVETorchRLModule
from drive_rllib.core import termination as termination_rules
from drive_rllib.core.spec import (
    Check,
    DRIVESpec,
    Termination,
    flag,
    integer,
    non_negative_number,
    positive_number,
)
from drive_rllib.mujoco_log import MUJOCO_LOG_FILE, redirect_mujoco_warnings
from drive_rllib.replay.actor import (
    ReplayUnavailableError,
    call,
    create_replay_actor,
    timeout_message,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DRIVE",
    "REPLAY_FILE",
    "DRIVEConfig",
    "register",
    "register_module_env",
    "resource_request",
    "resource_shortfall",
]

#: The core's settings that are RLlib's own `training()` arguments too.
RLLIB_SETTINGS_IN_SPEC = ("gamma",)
#: DRIVE's keywords of `DRIVEConfig.training()`: the spec's fields (but gamma, which
#: RLlib's `training()` takes), then the Learner's and the loop's settings.
CORE_SETTINGS = tuple(
    name for name in DRIVESpec.setting_names() if name not in RLLIB_SETTINGS_IN_SPEC
)
LEARNER_SETTINGS = (
    "model_lr",
    "posterior_lr",
    "prior_lr",
    "value_lr",
    "entropy_floor_lr",
    "tau",
    "model_eval_interval",
    "model_eval_batch_size",
    "model_weight_decay",
    "max_skipped_updates",
    "flush_denormals",
    "optimizer_implementation",
    "gradient_check",
)
LOOP_SETTINGS = (
    "updates_per_iteration",
    "env_steps_per_iteration",
    "num_warmup_steps",
    "warmup_catch_up",
    "replay_capacity",
    "holdout_every",
    "replay_actor_resources",
    "replay_timeout_s",
    "replay_snapshot_interval",
    "max_abs_value",
    "max_rejected_share",
    "lean_collection",
)
DRIVE_SETTINGS = CORE_SETTINGS + LEARNER_SETTINGS + LOOP_SETTINGS
#: How long setup() waits for the replay actor to be scheduled.
REPLAY_START_TIMEOUT_S = 120
#: How often Ray restarts a crashed replay actor (each restart reloads its newest snapshot).
REPLAY_MAX_RESTARTS = 10
#: The replay actor's snapshot file, in the trial's folder (``Algorithm.logdir``).
REPLAY_SNAPSHOT_FILE = "replay_snapshot.npz"
#: The rejected-row share is checked once this many rows were pushed (one bad row among
#: the first few must not end a run).
REJECTED_SHARE_MIN_ROWS = 1000
#: `sigma_min` below this makes log(sigma) and 1 / sigma^2 in Eq. 4 overflow in float32.
SIGMA_MIN_FLOOR = 1e-4


class DRIVEConfig(AlgorithmConfig):
    """Configuration of DRIVE (Distributional model-based RL via Variational Inference).

    .. code-block:: python

        from drive_rllib.algorithm import DRIVEConfig

        config = (
            DRIVEConfig()
            .environment("Pendulum-v1")
            .env_runners(num_env_runners=2)
            .training(horizon=5, num_samples=1, updates_per_iteration=400,
                      env_steps_per_iteration=100)
        )
        algo = config.build_algo()
        algo.train()

    One iteration (``training_step``) is Algorithm 1 of the spec: ``T`` env
    steps on the EnvRunners (random actions during warm-up), then ``C`` update
    steps on the Learner(s), then a weight sync. ``C / T`` is the
    update-to-data ratio.
    """

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or DRIVE)

        # The core's settings, with the defaults and checks of drive_rllib.core.spec
        # (`to_spec()` builds the spec from them): H (horizon), N (num_samples), gamma,
        # alpha, policy_update, value_loss, member_per_trajectory, E (ensemble_size),
        # num_elites, model/policy/value hidden widths, sigma_min, termination,
        # entropy_floor, target_entropy (None -> -A), initial_entropy_weight,
        # inference_policy.
        for name, default in DRIVESpec().settings().items():
            setattr(self, name, default)
        # Optimisation: one learning rate per component.
        self.model_lr = 1e-3
        self.posterior_lr = 3e-4
        self.prior_lr = 3e-4
        self.value_lr = 3e-4
        self.entropy_floor_lr = 3e-4
        self.lr = None  # DRIVE uses the per-component rates above.
        self.tau = 0.005  # tau
        self.train_batch_size_per_learner = 256
        self.model_eval_interval = 250
        self.model_eval_batch_size = 1024
        self.model_weight_decay = 1e-4  # AdamW's decoupled weight decay of f_hat
        self.max_skipped_updates = 10
        # The update's cost (results unchanged but for rounding; see DRIVETorchLearner).
        self.flush_denormals = True
        self.optimizer_implementation = "fused"
        self.gradient_check = "global"
        # Algorithm 1.
        self.updates_per_iteration = 100  # C
        self.env_steps_per_iteration = 100  # T
        self.num_warmup_steps = 500
        self.warmup_catch_up = True
        self.replay_capacity = 1_000_000
        self.holdout_every = 10
        self.replay_actor_resources = None  # e.g. {"head": 0.01} on a cluster
        # Reliability: the replay actor's timeouts and snapshots, the data checks.
        self.replay_timeout_s = 60.0
        self.replay_snapshot_interval = 10
        self.max_abs_value = 1e6
        self.max_rejected_share = 0.01
        self.lean_collection = True  # DRIVEEnvRunner's own sampling loop

        # RLlib settings DRIVE needs.
        self.env_runner_cls = DRIVEEnvRunner
        self.rollout_fragment_length = "auto"  # T spread over the runners.
        self.normalize_actions = True  # the module acts in [-1, 1]
        self.min_time_s_per_iteration = None  # one training_step per iteration
        self.min_sample_timesteps_per_iteration = 0
        self.evaluation(evaluation_config=AlgorithmConfig.overrides(explore=False))

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        horizon: int | None = NotProvided,
        num_samples: int | None = NotProvided,
        alpha: float | None = NotProvided,
        policy_update: str | None = NotProvided,
        value_loss: str | None = NotProvided,
        member_per_trajectory: bool | None = NotProvided,
        ensemble_size: int | None = NotProvided,
        num_elites: int | None = NotProvided,
        model_hiddens: list[int] | None = NotProvided,
        policy_hiddens: list[int] | None = NotProvided,
        value_hiddens: list[int] | None = NotProvided,
        sigma_min: float | None = NotProvided,
        termination: str | None = NotProvided,
        termination_rule: Callable[[Any], Any] | None = NotProvided,
        entropy_floor: bool | None = NotProvided,
        target_entropy: float | None = NotProvided,
        initial_entropy_weight: float | None = NotProvided,
        model_layer_norm: bool | None = NotProvided,
        model_activation: str | None = NotProvided,
        model_normalize_targets: bool | None = NotProvided,
        value_heads: int | None = NotProvided,
        value_layer_norm: bool | None = NotProvided,
        value_scaled: bool | None = NotProvided,
        value_target_aggregate: str | None = NotProvided,
        value_policy_aggregate: str | None = NotProvided,
        value_bounds: bool | None = NotProvided,
        return_range_rate: float | None = NotProvided,
        start_state_model_fraction: float | None = NotProvided,
        distribution_rollout_interval: int | None = NotProvided,
        distribution_rollout_horizon: int | None = NotProvided,
        distribution_rollout_batch: int | None = NotProvided,
        model_state_rounds: int | None = NotProvided,
        model_fit_interval: int | None = NotProvided,
        model_fit_interval_start: int | None = NotProvided,
        model_batch_size: int | None = NotProvided,
        posterior_batch_size: int | None = NotProvided,
        precision: str | None = NotProvided,
        inference_policy: str | None = NotProvided,
        model_lr: float | None = NotProvided,
        posterior_lr: float | None = NotProvided,
        prior_lr: float | None = NotProvided,
        value_lr: float | None = NotProvided,
        entropy_floor_lr: float | None = NotProvided,
        tau: float | None = NotProvided,
        model_eval_interval: int | None = NotProvided,
        model_eval_batch_size: int | None = NotProvided,
        model_weight_decay: float | None = NotProvided,
        max_skipped_updates: int | None = NotProvided,
        flush_denormals: bool | None = NotProvided,
        optimizer_implementation: str | None = NotProvided,
        gradient_check: str | None = NotProvided,
        updates_per_iteration: int | None = NotProvided,
        env_steps_per_iteration: int | None = NotProvided,
        num_warmup_steps: int | None = NotProvided,
        warmup_catch_up: bool | None = NotProvided,
        replay_capacity: int | None = NotProvided,
        holdout_every: int | None = NotProvided,
        replay_actor_resources: dict[str, float] | None = NotProvided,
        replay_timeout_s: float | None = NotProvided,
        replay_snapshot_interval: int | None = NotProvided,
        max_abs_value: float | None = NotProvided,
        max_rejected_share: float | None = NotProvided,
        lean_collection: bool | None = NotProvided,
        **kwargs: Any,
    ) -> DRIVEConfig:
        """Sets DRIVE's training settings (and RLlib's, e.g. ``gamma``, via ``kwargs``).

        Args:
            horizon: H >= 1, imagined model steps per start state in Eq. 6
                (Eq. 4 uses the real first step and H - 1 imagined ones); also
                accepted as ``model_horizon`` (the name experiment files use). Default 5.
            num_samples: N >= 1, imagined trajectories per start state; N > 1
                moment-matches the mixture in J_KL2. Default 1.
            alpha: temperature > 0 of p(O=1 | U) ∝ exp(U / alpha); the
                return term of Eq. 6 is weighted by 1 / alpha. Default 1.0.
            policy_update: "joint" (pi_theta trained by Eq. 6 with q_phi) or
                "distill" (q_phi by Eq. 6 with pi_theta fixed, then pi_theta by
                Eq. 5). Default "joint".
            value_loss: "split" (mean by squared error to the target mean,
                sigma by cross-entropy with the mean fixed) or "cross_entropy"
                (plain Gaussian cross-entropy of Eq. 4). Default "split".
            member_per_trajectory: keep one elite member for a whole imagined
                trajectory instead of drawing one at every model step (the
                spec's choice). Default False.
            ensemble_size: E, members of the dynamics ensemble. Default 7.
            num_elites: members used in rollouts, the best on held-out data;
                1 <= num_elites <= ensemble_size. Default 5.
            model_hiddens: hidden widths of each ensemble member. Default
                [200, 200, 200].
            policy_hiddens: hidden widths of pi_theta and of q_phi. Default [256, 256].
            value_hiddens: hidden widths of the value net psi (and psi_bar).
                Default [256, 256].
            sigma_min: lower bound > 0 of the value's sigma, also the floor of
                the target law's standard deviation. Default 0.1.
            termination: where imagined rollouts stop: "auto" (default: the env's
                registered rule, `drive_rllib.core.termination`, where it has one;
                else "learned"), "learned" (f_hat's termination head), "known" (the
                rule), "none". See ``NetworkSpec`` in core/spec.py.
            termination_rule: a known rule (next_obs [M, S] -> bool [M]) for an env
                with no registered one. Default None.
            entropy_floor: add the entropy floor on pi_theta, its weight tuned
                toward ``target_entropy`` as SAC tunes its temperature. Default True.
            target_entropy: target entropy of pi_theta; None means -A (minus
                the action dimension). Default None.
            initial_entropy_weight: initial weight > 0 of the entropy floor. Default 1.0.
            model_layer_norm: layer normalisation (no affine) before every layer of
                each ensemble member but the first; keeps f_hat's hidden activations
                bounded for inputs far from the data. Default True.
            model_activation: "silu" or "relu", f_hat's hidden activation. Default "silu".
            model_normalize_targets: f_hat predicts (s' - s, r) standardised by
                running statistics of the replayed data. Default True.
            value_heads: K >= 1 Gaussian heads of p_psi (and psi_bar), each its own
                MLP, each fitted by Eq. 4. Default 5.
            value_layer_norm: layer normalisation in psi (every layer but the
                first). Default True.
            value_scaled: p_psi's outputs in units of the return range (its center
                plus its half-width times the raw output). Default True.
            value_target_aggregate: "min2" (of two heads drawn at random, the
                lower mean: pessimistic) or "mean" (moment-matched mixture of the
                heads): the psi_bar that bootstraps Eq. 4. Default "min2".
            value_policy_aggregate: the same choice for the p_psi of Eq. 6 (the
                bootstrap of J_U and the law of J_KL2). Default "mean".
            value_bounds: clip Eq. 4's target means to the return range
                [low, high] / (1 - gamma). Default True.
            return_range_rate: per-step rate in (0, 1] at which the return range
                follows the 1% / 99% quantiles of the rewards imagined in Eq. 6;
                it starts at those of the first batch's real rewards. Default 3e-4.
            start_state_model_fraction: share in [0, 1] of Eq. 6's start states
                drawn from the model-state buffer (the rest: the batch's real
                states). Default 1.0.
            distribution_rollout_interval: update steps between distribution
                rollouts, which fill the model-state buffer (0: none; then set
                start_state_model_fraction=0). Default 20.
            distribution_rollout_horizon: model steps of a distribution rollout
                under pi_theta. Default 20.
            distribution_rollout_batch: replayed start states of a distribution
                rollout (split over the Learners). Default 256.
            model_state_rounds: distribution rollouts the model-state buffer
                holds (the oldest states are overwritten). Default 10.
            model_fit_interval: f_hat takes its gradient step on every k-th update
                step only; the others hold f_hat and its optimizer as they are.
                DHMBPO and MBPO fit the model far less often than the actor; the
                fit is about a quarter of a step's cost. On HalfCheetah 2 lost a
                third of one seed's return in three (20k), 4 left f_hat 10-100x less accurate
                (docs/diagnosis.md). Default 1 (every step).
            model_fit_interval_start: the first update steps, which fit f_hat on
                every step before ``model_fit_interval`` applies (e.g.
                ``num_warmup_steps``, so that the warm-up catch-up fits on every
                step). Default 0.
            model_batch_size: rows of each f_hat member's bootstrap per fitting
                step (0: one per batch row, ``train_batch_size_per_learner``); at
                most that. Fewer rows cut the model fit (about a third of a
                step's arithmetic) in proportion. 128 of 256 saved an eighth
                of the update and cost HalfCheetah return on both seeds
                measured (docs/diagnosis.md). Default 0.
            posterior_batch_size: Eq. 6's start states per update step (0: one
                per batch row, ``train_batch_size_per_learner``); at most that.
                Eq. 6's rollouts are the largest part of a step's cost; f_hat and
                Eq. 4 still see the whole batch. 128 of 256 saved a tenth of the
                step and cost a fifth of HalfCheetah's return at 20k
                (docs/diagnosis.md). Default 0.
            precision: the update step's arithmetic: "float32", or "bfloat16" (mixed
                precision: every network's layers in bfloat16 under
                ``torch.autocast``, their outputs cast back to float32; rollout
                states, losses, gradients, parameters and optimizer states in
                float32), or "auto". bfloat16 matmuls are
                several times faster on CPUs with AMX or AVX512-BF16 and on GPUs
                with bf16 tensor cores; elsewhere they are emulated (slower). "auto":
                bfloat16 where the Learner's device has it, else float32. On
                HalfCheetah-v5 bfloat16 learned as float32 did (`docs/performance.md`).
                Default "auto".
            inference_policy: the policy whose deterministic mean acts when
                ``explore=False`` (evaluation): "prior" (pi_theta) or
                "posterior" (q_phi; the EnvRunners then also hold q_phi).
                Default "prior".
            model_lr: Adam learning rate of the dynamics ensemble. Default 1e-3.
            posterior_lr: Adam learning rate of q_phi. Default 3e-4.
            prior_lr: Adam learning rate of pi_theta. Default 3e-4.
            value_lr: Adam learning rate of psi. Default 3e-4.
            entropy_floor_lr: Adam learning rate of the entropy floor's log
                weight. Default 3e-4.
            tau: Polyak rate in (0, 1] of psi_bar after every update step. Default 0.005.
            model_eval_interval: update steps between rankings of the ensemble
                members on held-out replay data (0: never; elites stay the
                first ``num_elites`` members). Default 250.
            model_eval_batch_size: held-out rows each Learner draws per ranking.
                Default 1024.
            model_weight_decay: decoupled weight decay >= 0 of the dynamics
                ensemble's optimizer (AdamW; 0: plain Adam). Default 1e-4.
            max_skipped_updates: K >= 1. An update step whose loss is NaN or inf
                is skipped (weights, optimizer states and normaliser stay as they
                were; counted as ``training/skipped_steps``); K consecutive
                skipped steps fail the trial. Default 10.
            flush_denormals: flush subnormal floats to zero on the CPU thread of
                each Learner's update (``torch.set_flush_denormal``; Adam's moments
                decay into subnormals, which x86 CPUs compute slowly). Process-wide
                for that thread: with ``num_learners=0`` it is the driver's. Default True.
            optimizer_implementation: "fused" (one fused Adam kernel per component
                where the device has one, else "foreach"), "foreach" or "for_loop"
                (torch's own default on CPU). Default "fused".
            gradient_check: "global" (one NaN / inf check over the loss and all
                gradients together; a non-finite one skips the whole update step,
                see ``max_skipped_updates``), "per_parameter" (the loss checked, then
                RLlib's own ``apply_gradients``, with ``torch_skip_nan_gradients``) or
                "off" (only the loss is checked). Default "global".
            updates_per_iteration: C >= 1, update steps per iteration on every
                Learner, each on ``train_batch_size_per_learner`` rows. Default 100.
            env_steps_per_iteration: T >= 1, env steps per iteration over all
                EnvRunners (rounded up to a multiple of runners x envs). Default 100.
            num_warmup_steps: env steps with uniform random actions (in the
                module's [-1, 1] space) before pi_theta acts; an iteration that
                starts inside the warm-up is random throughout, so warm-up ends
                on an iteration boundary. Learning starts once the replay holds
                this many rows and at least one batch. Default 500.
            warmup_catch_up: the first learning iteration runs round(C / T x rows
                replayed) update steps instead of C (in chunks of C), so the
                update-to-data ratio counts the warm-up's env steps too (as
                DHMBPO's first update). Default True.
            replay_capacity: transitions held by the replay actor. Default 1,000,000.
            holdout_every: every k-th replay position is held out from
                training and used to rank the ensemble; 0 disables the holdout
                (then set ``model_eval_interval=0``). Default 10.
            replay_actor_resources: custom resources the replay actor asks for,
                which pins it to the nodes that offer them, e.g. ``{"head": 0.01}``
                with ``cluster/aws.yaml`` (the head node offers ``head: 1``). The
                Algorithm's resource request gains one bundle with them, so the
                actor also fits inside a Tune trial's placement group. Default
                None: no custom resource, the actor takes 0 CPUs anywhere.
            replay_timeout_s: seconds every call into the replay actor may take
                before it fails with an error that names the actor (a hung actor
                is reported within about this bound after the sampling phase).
                Default 60.
            replay_snapshot_interval: iterations between snapshots of the replay
                (``replay_snapshot.npz`` in the trial's folder, written atomically;
                every checkpoint is one too). A crashed replay actor is restarted
                and reloads the newest, so at most the rows of this many
                iterations are lost (``replay/rows_lost``). 0: no snapshots (a
                restarted actor starts empty). Default 10.
            max_abs_value: rows whose observation entries exceed this bound times
                the env's observation scale (the largest finite bound of its
                observation space, at least 1), or whose reward or action exceeds
                it, are dropped before they are stored, as are rows with NaN or
                inf (``replay/rows_rejected``). Default 1e6.
            max_rejected_share: the run fails when more than this share of the
                rows pushed so far were rejected (checked from 1,000 rows on).
                Default 0.01.
            lean_collection: training EnvRunners step their
                ``num_envs_per_env_runner`` vectorised envs in DRIVEEnvRunner's own
                loop (one batched forward of pi_theta per vector step, one push per
                ``sample()`` call) instead of RLlib's connector pipelines and episode
                objects; RLlib's loop still runs with custom connectors, episode
                callbacks, ``batch_mode="complete_episodes"`` and on evaluation
                runners. Default True.
            **kwargs: RLlib's own training settings (``gamma`` default 0.99,
                ``train_batch_size_per_learner`` default 256, ``grad_clip``, ...).

        Returns:
            This updated config object.
        """
        if "model_horizon" in kwargs:  # DRIVE's name of H; the attribute is `horizon`
            self.horizon = kwargs.pop("model_horizon")
        super().training(**kwargs)
        # Each DRIVE keyword above sets the attribute of the same name; a test checks that
        # the keywords are exactly DRIVE_SETTINGS (the spec's fields and the settings below).
        given = locals()
        for name in DRIVE_SETTINGS:
            if given[name] is not NotProvided:
                setattr(self, name, given[name])
        return self

    @property
    def model_horizon(self) -> int:
        """H, the model horizon: the name the ``rllib`` command and experiment files use
        (``horizon`` was the episode length in old RLlib files); the same as ``horizon``."""
        return self.horizon

    @model_horizon.setter
    def model_horizon(self, value: int) -> None:
        self.horizon = value

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DRIVETorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type[Learner]:
        return DRIVETorchLearner

    @override(AlgorithmConfig)
    def get_rollout_fragment_length(self, worker_index: int = 0) -> int:
        """With "auto", T env steps per iteration spread over all runners and envs."""
        if self.rollout_fragment_length == "auto":
            num_streams = max(self.num_env_runners, 1) * self.num_envs_per_env_runner
            return max(1, math.ceil(self.env_steps_per_iteration / num_streams))
        return self.rollout_fragment_length

    def to_spec(self) -> DRIVESpec:
        """The core's settings of this config as one checked `DRIVESpec`; with
        ``termination`` "auto" or "known" and no ``termination_rule`` given, the rule
        registered for the env (made with its ``env_config``).

        Raises:
            ValueError: a setting fails its check (the message says what to change).
        """
        termination, rule = self.resolved_termination()
        return DRIVESpec.from_settings(self, termination=termination, termination_rule=rule)

    def resolved_termination(self) -> tuple[Any, Callable[[Any], Any] | None]:
        """(termination, termination_rule) as the core gets them: where ``termination`` is
        "auto" or "known" and no rule is given, the env's registered rule (made with its
        ``env_config``), or "none" where the registry says the env never terminates."""
        try:
            wants_rule = Termination(self.termination) in (Termination.AUTO, Termination.KNOWN)
        except ValueError:  # the spec's check names the bad value
            wants_rule = False
        if self.termination_rule is not None or not wants_rule:
            return self.termination, self.termination_rule
        if not termination_rules.has_rule(self.env):
            return self.termination, None
        rule = termination_rules.rule_for(self.env, self.env_config)
        return (Termination.NONE, None) if rule is None else (Termination.KNOWN, rule)

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # The RLModule gets its settings as one spec (``DRIVETorchRLModule.setup``).
        return super()._model_config_auto_includes | {SPEC_KEY: self.to_spec().to_dict()}

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Checks every DRIVE setting; each error message says what to change."""
        super().validate()
        if not self._validate_config:
            return
        self._check_resolved()
        self._check_finite_settings()
        self._check_core_settings()
        self._check_learner_settings()
        self._check_loop_settings()
        self._check_rllib_settings()
        self._check_torch_compile()
        self._check_env_spaces()

    # -- checks --------------------------------------------------------------------------

    def _check_resolved(self) -> None:
        for name in DRIVE_SETTINGS + ("gamma", "train_batch_size_per_learner"):
            value = getattr(self, name)
            unresolved_grid = isinstance(value, dict) and "grid_search" in value
            if unresolved_grid or type(value).__module__.startswith("ray.tune"):
                self._value_error(
                    f"`{name}` is {value!r}, an unresolved search space. Pass the config "
                    "to tune.Tuner (which resolves tune.grid_search / tune.choice per "
                    "trial) instead of validating or building it directly."
                )

    def _check_finite_settings(self) -> None:
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
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self._value_error(
                    f"`{name}` must be a finite number, got {value!r}: e.g. "
                    f"config.training({name}={getattr(DRIVEConfig(), name)!r})."
                )
        sigma_min = self.sigma_min
        if isinstance(sigma_min, (int, float)) and 0 < sigma_min < SIGMA_MIN_FLOOR:
            self._value_error(
                f"`sigma_min` ({sigma_min}) is below {SIGMA_MIN_FLOOR}: log(sigma) and "
                "1 / sigma^2 of the value's Gaussian overflow in float32. Use "
                f"sigma_min >= {SIGMA_MIN_FLOOR} (default 0.1)."
            )
        if isinstance(self.num_env_runners, int) and self.num_env_runners < 0:
            self._value_error(
                f"`num_env_runners` must be >= 0, got {self.num_env_runners}: 0 samples in "
                "the driver process, N > 0 on N remote EnvRunners."
            )

    def _check_core_settings(self) -> None:
        """H, N, gamma, alpha, the networks, ...: the checks of drive_rllib.core.spec."""
        try:
            self.to_spec()
        except ValueError as error:
            self._value_error(str(error))

    def _check_learner_settings(self) -> None:
        """Learning rates, tau, the ensemble's ranking, the batch size."""
        for name in ("model_lr", "posterior_lr", "prior_lr", "value_lr", "entropy_floor_lr"):
            self._check_value(name, positive_number)
        if not isinstance(self.tau, (int, float)) or not 0.0 < self.tau <= 1.0:
            self._value_error(
                f"`tau` must lie in (0, 1], got {self.tau!r}: e.g. config.training(tau=0.005)."
            )
        self._check_value("model_eval_interval", integer(minimum=0))
        self._check_value("model_eval_batch_size", integer(minimum=1))
        self._check_value("train_batch_size_per_learner", integer(minimum=1))
        self._check_value("model_weight_decay", non_negative_number)
        self._check_value("flush_denormals", flag)
        for name, choices in (
            ("optimizer_implementation", OPTIMIZER_IMPLEMENTATIONS),
            ("gradient_check", GRADIENT_CHECKS),
        ):
            if getattr(self, name) not in choices:
                self._value_error(
                    f"`{name}` must be one of {choices}, got {getattr(self, name)!r}: e.g. "
                    f"config.training({name}={choices[0]!r})."
                )

    def _check_loop_settings(self) -> None:
        """Algorithm 1's T, C and warm-up; the replay's capacity, holdout and resources."""
        self._check_value("updates_per_iteration", integer(minimum=1))
        self._check_value("env_steps_per_iteration", integer(minimum=1))
        self._check_value("num_warmup_steps", integer(minimum=0))
        self._check_value("warmup_catch_up", flag)
        self._check_value("replay_capacity", integer(minimum=1))
        self._check_value("holdout_every", integer(minimum=0))
        self._check_value("lean_collection", flag)
        self._check_replay_actor_resources()
        self._check_holdout()
        self._check_reliability_settings()
        if (
            isinstance(self.replay_capacity, int)
            and isinstance(self.train_batch_size_per_learner, int)
            and self.replay_capacity < self.train_batch_size_per_learner
        ):
            self._value_error(
                f"`replay_capacity` ({self.replay_capacity}) is smaller than one batch "
                f"(`train_batch_size_per_learner`={self.train_batch_size_per_learner}): "
                "raise replay_capacity."
            )
        for name in ("model_batch_size", "posterior_batch_size"):
            rows = getattr(self, name)
            if (
                isinstance(rows, int)
                and isinstance(self.train_batch_size_per_learner, int)
                and rows > self.train_batch_size_per_learner
            ):
                self._value_error(
                    f"`{name}` ({rows}) exceeds one batch "
                    f"(`train_batch_size_per_learner`={self.train_batch_size_per_learner}): "
                    f"lower {name} (0: the whole batch)."
                )

    def _check_reliability_settings(self) -> None:
        """The replay actor's timeout and snapshots, the data checks' bounds."""
        self._check_value("replay_snapshot_interval", integer(minimum=0))
        self._check_value("max_skipped_updates", integer(minimum=1))
        for name in ("replay_timeout_s", "max_abs_value"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < math.inf
            ):
                self._value_error(
                    f"`{name}` must be a finite number > 0, got {value!r}: e.g. "
                    f"config.training({name}={getattr(DRIVEConfig(), name)!r})."
                )
        share = self.max_rejected_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            self._value_error(
                f"`max_rejected_share` must lie in [0, 1], got {share!r}: e.g. "
                "config.training(max_rejected_share=0.01) (1 never fails the run)."
            )

    def _check_replay_actor_resources(self) -> None:
        resources = self.replay_actor_resources
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
            self._value_error(
                "`replay_actor_resources` must be None or a dict of custom resource names "
                f"to positive amounts, e.g. {{'head': 0.01}}; got {resources!r}."
            )

    def _check_holdout(self) -> None:
        if self.holdout_every == 1:
            self._value_error(
                "`holdout_every=1` would hold out every replay row and leave none to "
                "train on: use 0 (no holdout) or >= 2 (default 10)."
            )
        if self.holdout_every == 0 and self.model_eval_interval:
            self._value_error(
                "`holdout_every=0` leaves no held-out rows to rank the ensemble on: set "
                "`model_eval_interval=0` too, or use `holdout_every` >= 2."
            )

    def _check_value(self, name: str, check: Check) -> None:
        """One setting against one of the core's checks (same messages as the spec's)."""
        try:
            check(name, getattr(self, name))
        except ValueError as error:
            self._value_error(str(error))

    def _check_rllib_settings(self) -> None:
        if self.lr is not None:
            self._value_error(
                f"DRIVE has one learning rate per component; `lr` ({self.lr}) is unused. "
                "Set config.training(lr=None) and use model_lr, posterior_lr, prior_lr, "
                "value_lr and entropy_floor_lr."
            )
        if self._train_batch_size_per_learner is None:
            num_learners = max(self.num_learners, 1)
            if self.train_batch_size % num_learners:
                self._value_error(
                    f"`train_batch_size` ({self.train_batch_size}) is not divisible by "
                    f"`num_learners` ({num_learners}): set train_batch_size to a multiple "
                    f"of {num_learners}, or set train_batch_size_per_learner instead."
                )
        if not self.normalize_actions:
            self._value_error(
                "DRIVE's policies act in [-1, 1] and the env sees its own bounds: set "
                "config.environment(normalize_actions=True)."
            )
        if self.env_runner_cls is not None and not (
            isinstance(self.env_runner_cls, type)
            and issubclass(self.env_runner_cls, DRIVEEnvRunner)
        ):
            self._value_error(
                f"`env_runner_cls` ({self.env_runner_cls}) must subclass DRIVEEnvRunner, "
                "which pushes transitions to the replay actor."
            )
        if self.is_multi_agent:
            self._value_error("DRIVE is single-agent: remove config.multi_agent(...).")
        if self.framework_str != "torch":
            self._value_error(
                f"DRIVE runs on torch only: set config.framework('torch'), not "
                f"{self.framework_str!r}."
            )
        if self.is_offline:
            self._value_error("DRIVE learns online: remove config.offline_data(input_=...).")

    def _check_torch_compile(self) -> None:
        """RLlib's ``torch_compile_learner``: DRIVE compiles the RLModule's update step
        (called by ``forward_train``) on one Learner (`DRIVETorchLearner.build`)."""
        self._check_value("torch_compile_learner", flag)
        if not self.torch_compile_learner:
            return
        if self.torch_compile_learner_what_to_compile != "forward_train":
            self._value_error(
                "`torch_compile_learner_what_to_compile` must be 'forward_train' for DRIVE, "
                f"got {self.torch_compile_learner_what_to_compile!r}: DRIVE's update calls "
                "the replay actor and moves statistics between the steps, which "
                "'complete_update' cannot trace. Use config.framework("
                "torch_compile_learner_what_to_compile='forward_train')."
            )
        if self.num_learners > 1:
            self._value_error(
                f"`torch_compile_learner` with `num_learners` ({self.num_learners}) > 1: "
                "RLlib 2.60 does not compile modules wrapped in DistributedDataParallel. "
                "Use num_learners=0 or 1, or config.framework(torch_compile_learner=False)."
            )

    def _check_env_spaces(self) -> None:
        observation_space, action_space = self.env_spaces()
        if not isinstance(action_space, gym.spaces.Box):
            self._value_error(
                f"DRIVE needs a continuous (Box) action space; env {self.env!r} has "
                f"{action_space}. Use an environment with continuous actions (e.g. "
                "Pendulum-v1) or wrap the env to expose a Box action space."
            )
            return
        if len(action_space.shape) != 1:
            self._value_error(
                f"DRIVE needs a flat (1-D) Box action space; env {self.env!r} has shape "
                f"{action_space.shape}. Flatten the actions with a wrapper."
            )
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            self._value_error(
                f"DRIVE rescales actions from [-1, 1] to the env's bounds, so they must be "
                f"finite; env {self.env!r} has low={action_space.low}, high="
                f"{action_space.high}. Wrap the env with gymnasium.wrappers.ClipAction "
                "and a bounded Box, or give the env finite action bounds."
            )
        target = self.target_entropy
        action_dim = int(np.prod(action_space.shape))
        if (
            isinstance(target, (int, float))
            and not isinstance(target, bool)
            and not -10 * action_dim <= target <= action_dim
        ):
            self._value_error(
                f"`target_entropy` ({target}) lies outside [-10 A, A] = [{-10 * action_dim}, "
                f"{action_dim}] for this env's A={action_dim} actions: the entropy floor's "
                "weight would grow or vanish without bound. Use None (-A) or a value in "
                "that range."
            )
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            self._value_error(
                f"DRIVE's MLPs need a flat Box observation space; env {self.env!r} has "
                f"{observation_space}. Flatten observations with "
                "gymnasium.wrappers.FlattenObservation."
            )

    def env_spaces(self) -> tuple[gym.Space, gym.Space]:
        """(observation space, action space) of the configured env, building it once.

        Raises:
            ValueError: no env, an unknown env id, or a multi-agent env.
        """
        from ray.rllib.algorithms.algorithm import Algorithm

        register_module_env(self.env)
        if self.env is None:
            raise ValueError(
                "DRIVE learns from an environment: set config.environment('Pendulum-v1') "
                "(a gymnasium id, a registered name, or an env class)."
            )
        # Algorithm.__init__ validates before Tune moves into the trial folder: MuJoCo's
        # warnings of this env to logging, not to ./MUJOCO_LOG.TXT (setup's handler, with
        # the trial folder's log file, replaces this one).
        redirect_mujoco_warnings(replace=False)
        try:
            _, creator = Algorithm._get_env_id_and_creator(self.env, self)
            env = creator(EnvContext(self.env_config, worker_index=0))
        except (gym.error.Error, ImportError) as error:
            raise ValueError(
                f"Unknown env {self.env!r}: use a gymnasium id (e.g. 'Pendulum-v1'), a name "
                "registered with ray.tune.registry.register_env, or an env class. "
                f"({error})"
            ) from error
        except Exception as error:
            if type(error).__name__ == "EnvError":
                raise ValueError(
                    f"Unknown env {self.env!r}: use a gymnasium id (e.g. 'Pendulum-v1'), a "
                    "name registered with ray.tune.registry.register_env, or an env class. "
                    f"({error})"
                ) from error
            raise
        try:
            multi_agent = isinstance(env, MultiAgentEnv)
            spaces = env.observation_space, env.action_space
        finally:
            env.close()
        if multi_agent:
            raise ValueError(f"DRIVE is single-agent; env {self.env!r} is multi-agent.")
        return spaces


class DRIVE(Algorithm):
    """DRIVE on RLlib: EnvRunners fill a replay actor, Learners train from it.

    Reliability (see the README's reliability table):

    - the replay actor is restarted by Ray when it dies and reloads its newest
      snapshot; the driver counts the rows lost (``replay/rows_lost``), and
      every call into the actor has a timeout (``replay_timeout_s``);
    - ``num_env_steps_sampled_lifetime`` counts rows that reached the replay
      actor (the rows it stored, plus those a crash lost), not the runners'
      step counters; warm-up and stop criteria read it;
    - checkpoints are written atomically (`drive_rllib.algorithm.checkpoint`),
      also those Tune writes into a trial's folder, and a Tune restore continues
      from the newest complete checkpoint in the trial's folder.
    """

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DRIVEConfig:
        return DRIVEConfig()

    @override(Algorithm)
    def setup(self, config: DRIVEConfig) -> None:
        # Outside Tune (config.build_algo()), runners and learners that do not fit the
        # cluster would wait forever: say what to lower instead. Under Tune the trial's
        # placement group already holds them.
        if ray.is_initialized() and ray.util.get_current_placement_group() is None:
            shortfall = resource_shortfall(
                config, ray.cluster_resources(), include_main_process=False
            )
            if shortfall:
                raise ValueError(shortfall)
        # MuJoCo's warnings go to the run folder, not to the terminal and ./MUJOCO_LOG.TXT:
        # under Tune the trial folder of the results (self.logdir is a working folder in
        # Ray's session folder, which Tune does not copy there).
        redirect_mujoco_warnings(os.path.join(self._trial_folder(), MUJOCO_LOG_FILE))
        # The smoothed training return (env_runners/episode_return_mean), see `step`.
        self._recent_returns = RecentReturns(config.metrics_num_episodes_for_smoothing)
        # Notices of the long steps (compile, catch-up, restore, evaluation) for `rllib train`,
        # from the trial folder's name (Tune's trial id is not passed on to the Algorithm).
        self._notify = Notifier(lambda: os.path.basename(os.path.normpath(self.logdir)))
        self._learned_in_process = False
        super().setup(config)
        observation_space, action_space = self.spaces[DEFAULT_MODULE_ID]
        self._replay_name = f"drive_replay_{uuid.uuid4().hex[:12]}"
        self._snapshot_path = (
            os.path.join(self.logdir, REPLAY_SNAPSHOT_FILE)
            if self.config.replay_snapshot_interval
            else None
        )
        bound = float(self.config.max_abs_value)
        self._replay = create_replay_actor(
            self.config.replay_capacity,
            int(np.prod(observation_space.shape)),
            int(np.prod(action_space.shape)),
            name=self._replay_name,
            holdout_every=self.config.holdout_every,
            seed=self.config.seed,
            num_cpus=0,
            resources=self.config.replay_actor_resources,
            snapshot_path=self._snapshot_path,
            max_restarts=REPLAY_MAX_RESTARTS,
            max_abs_obs=bound * observation_scale(observation_space),
            max_abs_reward=bound,
            max_abs_action=bound,
        )
        try:
            # The actor imports RLlib's batch code now, within the start timeout, rather
            # than in its first `sample`, which has only `replay_timeout_s`.
            ray.get(
                self._replay.__ray_call__.remote(_import_batch_code),
                timeout=REPLAY_START_TIMEOUT_S,
            )
        except ray.exceptions.GetTimeoutError as error:
            raise RuntimeError(replay_start_error(self.config.replay_actor_resources)) from error
        # What the driver knows of the replay actor (the counters are checkpointed).
        self._replay_pid: int | None = None
        self._replay_total_added = 0
        self._rows_lost = 0
        self._replay_restarts = 0
        self._read_replay_status(baseline=True)
        self._connect_env_runners()
        replay, name, timeout = self._replay, self._replay_name, self.config.replay_timeout_s
        for result in self.learner_group.foreach_learner(
            lambda learner: learner.set_replay_actor(replay, name, timeout)
        ):
            result.get()

    @classmethod
    @override(Algorithm)
    def default_resource_request(
        cls, config: DRIVEConfig | dict[str, Any]
    ) -> PlacementGroupFactory:
        """RLlib's request, plus one bundle for the replay actor's custom resources.

        Under Tune every actor of a trial is scheduled in the trial's placement
        group, so an actor asking for e.g. ``{"head": 0.01}`` only starts if a
        bundle carries that resource.
        """
        factory = super().default_resource_request(config)
        resources = (
            config.get("replay_actor_resources")
            if isinstance(config, dict)
            else config.replay_actor_resources
        )
        if not resources:
            return factory
        return PlacementGroupFactory(
            bundles=[*factory.bundles, {"CPU": 0, **resources}], strategy=factory.strategy
        )

    @property
    def replay_actor(self) -> ray.actor.ActorHandle:
        """The replay actor holding every transition the EnvRunners collected."""
        return self._replay

    @property
    def num_rows_counted(self) -> int:
        """Rows that reached the replay actor: those it holds the count of, plus those a
        crash lost. ``num_env_steps_sampled_lifetime``, warm-up and stop criteria use it."""
        return self._replay_total_added + self._rows_lost

    def _connect_env_runners(self, remote_worker_ids: list[int] | None = None) -> None:
        """Hands the replay actor to all training EnvRunners (or only the given ones)."""
        replay, name, timeout = self._replay, self._replay_name, self.config.replay_timeout_s
        self.env_runner_group.foreach_env_runner(
            lambda env_runner: env_runner.set_replay_actor(replay, name, timeout),
            local_env_runner=remote_worker_ids is None,
            remote_worker_ids=remote_worker_ids,
        )

    @override(Algorithm)
    def restore_env_runners(self, env_runner_group: EnvRunnerGroup) -> list[int]:
        """Restores failed EnvRunners as RLlib does, then hands them the replay actor."""
        restored = super().restore_env_runners(env_runner_group)
        if restored and env_runner_group is self.env_runner_group:
            self._connect_env_runners(remote_worker_ids=restored)
        return restored

    def _call_replay(self, method: str, *args: Any) -> Any:
        return call(
            self._replay,
            method,
            *args,
            timeout=self.config.replay_timeout_s,
            name=self._replay_name,
        )

    def _read_replay_status(self, baseline: bool = False) -> dict[str, Any]:
        """The replay actor's counters; notices (and logs once) a restart and its lost rows.

        With ``baseline`` (after setup or a restore) the counters are taken as they are.
        """
        status = self._call_replay("status")
        restarted = self._replay_pid is not None and status["pid"] != self._replay_pid
        if restarted and not baseline:
            restored = status["restored_total_added"] or 0
            lost = max(0, self._replay_total_added - restored)
            self._rows_lost += lost
            self._replay_restarts += 1
            logger.warning(
                "The replay actor %s died and Ray restarted it (pid %s -> %s); it reloaded "
                "%s: %d rows added after that snapshot were lost (replay/rows_lost is now "
                "%d). Training continues.",
                self._replay_name,
                self._replay_pid,
                status["pid"],
                f"its snapshot of {restored} rows" if restored else "no snapshot (empty)",
                lost,
                self._rows_lost,
            )
        self._replay_pid = status["pid"]
        self._replay_total_added = status["total_added"]
        return status

    @override(Algorithm)
    def step(self) -> dict[str, Any]:
        """RLlib's iteration, whose ``env_runners/episode_return_mean`` becomes the mean of
        the last ``metrics_num_episodes_for_smoothing`` finished episodes, carried across
        iterations and EnvRunners (`drive_rllib.algorithm.returns`)."""
        return smooth_returns(super().step(), self._recent_returns)

    @override(Algorithm)
    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """RLlib's evaluation; a notice every interval while it runs (`rllib train`)."""
        with heartbeat(self._notify, long_step("evaluating")):
            return super().evaluate(*args, **kwargs)

    @override(Algorithm)
    def training_step(self) -> None:
        """One iteration of Algorithm 1: T env steps, C update steps, weight sync."""
        config = self.config
        warmup = self.num_rows_counted < config.num_warmup_steps

        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            _, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=config.env_steps_per_iteration,
                sample_timeout_s=config.sample_timeout_s,
                random_actions=warmup,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        status = self._read_replay_status()
        self._log_replay_metrics(status, warmup)
        check_rejected_share(
            status["rows_rejected"], status["total_added"], config.max_rejected_share
        )

        ready = (
            status["size"] >= max(config.num_warmup_steps, config.train_batch_size_per_learner)
            and status["num_train"] > 0
            and (status["num_holdout"] > 0 or not config.model_eval_interval)
        )
        if not ready:
            self.metrics.log_value(keys.UPDATE_STEPS, 0, window=1)
            self._maybe_snapshot()
            return

        batch_size = config.train_batch_size_per_learner
        num_updates = 0
        chunks = self._update_chunks(status["size"])
        progress = UpdateProgress(
            chunks, not self._learned_in_process, config.torch_compile_learner, status["size"]
        )
        self._learned_in_process = True
        if progress.start_line():
            self._notify(progress.start_line())
        with (
            self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)),
            heartbeat(self._notify, progress.describe),
        ):
            # One learner_group.update of C steps per chunk: the catch-up after warm-up
            # runs several, so no batch exceeds C x B rows.
            for chunk in chunks:
                batch_refs = [
                    self._replay.__ray_call__.remote(sample_learner_batch, chunk * batch_size)
                    for _ in range(max(config.num_learners, 1))
                ]
                # The Learners resolve the refs without a timeout: wait for them here.
                done, _ = ray.wait(
                    batch_refs, num_returns=len(batch_refs), timeout=config.replay_timeout_s
                )
                if len(done) < len(batch_refs):
                    raise ReplayUnavailableError(
                        timeout_message(
                            self._replay, "sample", config.replay_timeout_s, self._replay_name
                        )
                    )
                learner_results = self.learner_group.update(
                    batch_refs=batch_refs,
                    minibatch_size=batch_size,
                    num_epochs=1,
                    timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_rows_counted},
                )
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
                num_updates += chunk
                progress.chunk_done(chunk)
        if progress.end_line():
            self._notify(progress.end_line())
        self.metrics.log_value(keys.UPDATE_STEPS, num_updates, window=1)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                inference_only=True,
            )
        self._maybe_snapshot()

    def _update_chunks(self, replay_size: int) -> list[int]:
        """This iteration's update steps, in chunks of at most C (``update_chunks``)."""
        done = self.metrics.peek(
            (LEARNER_RESULTS, DEFAULT_MODULE_ID, keys.UPDATE_STEPS_LIFETIME), default=0
        )
        config = self.config
        return update_chunks(
            config.updates_per_iteration,
            config.env_steps_per_iteration,
            replay_size,
            catch_up=config.warmup_catch_up and not done,
        )

    def _log_replay_metrics(self, status: dict[str, Any], warmup: bool) -> None:
        self.metrics.log_dict(
            {
                # Rows that reached the replay, not the runners' step counters: a runner
                # that died after its push, or a dropped row, would make them differ.
                NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_rows_counted,
                keys.REPLAY_SIZE: status["size"],
                keys.REPLAY_ROWS_REJECTED: status["rows_rejected"],
                keys.REPLAY_ROWS_LOST: self._rows_lost,
                keys.REPLAY_RESTARTS: self._replay_restarts,
                keys.WARMUP: float(warmup),
            },
            window=1,
        )

    def _maybe_snapshot(self) -> None:
        """Every ``replay_snapshot_interval`` iterations the replay actor writes its snapshot."""
        interval = self.config.replay_snapshot_interval
        if self._snapshot_path and interval and (self.iteration + 1) % interval == 0:
            self._call_replay("snapshot")

    # -- checkpoints: RLlib's state plus the replay contents, written atomically ---------

    def _marker(self) -> dict[str, Any]:
        """What ``drive_checkpoint.json`` records: where a restore continues from."""
        return {
            "format_version": 1,
            "iteration": int(self.iteration),
            "env_steps": int(self.num_rows_counted),
            "replay_total_added": int(self._replay_total_added),
            "rows_lost": int(self._rows_lost),
            "replay_restarts": int(self._replay_restarts),
            "time_total_s": float(getattr(self, "_time_total", 0.0) or 0.0),
            "recent_returns": self._recent_returns.get_state(),
        }

    @override(Algorithm)
    def save_to_path(
        self,
        path: str | pathlib.Path | None = None,
        *,
        state: dict[str, Any] | None = None,
        filesystem: pyarrow.fs.FileSystem | None = None,
        use_msgpack: bool = False,
    ) -> str:
        """Saves RLlib's checkpoint, ``replay.npz`` and ``drive_checkpoint.json``, atomically.

        On a local filesystem everything is written into a hidden sibling folder,
        fsynced, and renamed to ``path`` (replacing an existing checkpoint there
        in one step): a crash leaves the previous checkpoint as it was. On other
        filesystems the marker file is written last, and loading a folder
        without it fails.
        """
        if path is None:
            path = tempfile.mkdtemp()
        if filesystem is None:
            filesystem, path = filesystem_and_path(path)
        self._read_replay_status()
        timeout, name = self.config.replay_timeout_s, self._replay_name
        if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            path = super().save_to_path(
                path, state=state, filesystem=filesystem, use_msgpack=use_msgpack
            )
            save_replay(self._replay, path, filesystem, timeout, name)
            write_marker(path, self._marker(), filesystem)
            return path
        with atomic_directory(path) as temporary:
            super().save_to_path(
                temporary, state=state, filesystem=filesystem, use_msgpack=use_msgpack
            )
            save_replay(self._replay, temporary, filesystem, timeout, name)
            write_marker(temporary, self._marker())
        if self._snapshot_path:
            # The checkpoint's replay file is the newest snapshot too (a hard link).
            self._call_replay("link_snapshot", os.path.join(path, REPLAY_FILE))
        return path

    @override(Algorithm)
    def restore_from_path(
        self,
        path: str | pathlib.Path,
        *args: Any,
        restore_replay: bool = True,
        **kwargs: Any,
    ) -> None:
        """Restores RLlib's state and, from a full checkpoint, the replay and the counters.

        Args:
            path: A checkpoint folder written by `save_to_path` (or a component's).
            restore_replay: False loads the weights and starts with an empty
                replay on purpose, also from a checkpoint without ``replay.npz``.
            *args, **kwargs: RLlib's arguments (``component``, ``filesystem``, ...).

        Raises:
            IncompleteCheckpointError: the checkpoint has no ``replay.npz`` (and
                ``restore_replay`` is True).
        """
        if kwargs.get("filesystem") is None:
            kwargs["filesystem"], path = filesystem_and_path(path)
        filesystem = kwargs["filesystem"]
        full = kwargs.get("component") is None
        marker = check_complete(path, filesystem, restore_replay) if full else None
        super().restore_from_path(path, *args, **kwargs)
        if not full:
            return
        if restore_replay:
            with heartbeat(self._notify, long_step(f"restoring the replay from {path}")):
                restore_replay_file(
                    self._replay, path, filesystem, self.config.replay_timeout_s, self._replay_name
                )
        self._read_replay_status(baseline=True)
        if marker is not None:
            self._recent_returns.set_state(marker.get("recent_returns"))
        if marker is not None and restore_replay:
            self._rows_lost = int(marker.get("rows_lost", 0))
            self._replay_restarts = int(marker.get("replay_restarts", 0))
        else:
            self._rows_lost = self._replay_restarts = 0
        # New episodes, not a replay of the run's first ones (the Learner's RNG states
        # came back with its state).
        generation = 1 + int(marker["iteration"] if marker is not None else self.iteration)
        self.env_runner_group.foreach_env_runner(
            lambda runner: runner.advance_seeds(generation), local_env_runner=True
        )

    @override(Algorithm)
    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Tune's save: writes the trial folder's checkpoint atomically, in place.

        Tune has the checkpoint written into a temporary folder and then copies
        it into the trial folder file by file, so a crash during the copy would
        leave a partial checkpoint under its final name. With local storage the
        checkpoint is written straight to its final folder by `save_to_path`;
        Tune's copy of the (empty) temporary folder then adds nothing.
        """
        destination = self._tune_checkpoint_destination()
        if destination is None:
            super().save_checkpoint(checkpoint_dir)
            return
        self.save_to_path(destination, use_msgpack=self.config._use_msgpack_checkpoints)

    @override(Algorithm)
    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Tune's restore: continues from the newest complete checkpoint of the trial.

        Tune restores the checkpoint it recorded last; after a crash a newer
        complete one may be on disk (saved, but not yet recorded in Tune's
        experiment state). That one is loaded instead, and the iteration
        counter continues from it.
        """
        path = os.path.abspath(checkpoint_dir)
        storage = getattr(self, "_storage", None)
        trial_dir = getattr(storage, "trial_fs_path", None)
        if trial_dir is not None and os.path.dirname(path) == os.path.abspath(trial_dir):
            newest = newest_complete_checkpoint(trial_dir)
            given = read_marker(path) or {}
            if newest is not None and newest[1].get("iteration", 0) > given.get("iteration", -1):
                logger.warning(
                    "Tune recorded checkpoint %s, but %s is newer and complete: continuing "
                    "from it.",
                    path,
                    newest[0],
                )
                path = newest[0]
        marker = read_marker(path)
        if marker is not None:
            self._iteration = int(marker["iteration"])
            self._time_total = float(marker.get("time_total_s", self._time_total or 0.0))
            logger.warning(
                "Continuing from %s: iteration %d, %d env steps.",
                path,
                marker["iteration"],
                marker["env_steps"],
            )
        super().load_checkpoint(path)

    def _trial_folder(self) -> str:
        """The trial folder of the results under Tune with local storage, else ``logdir``."""
        storage = getattr(self, "_storage", None)
        if storage is not None and isinstance(
            storage.storage_filesystem, pyarrow.fs.LocalFileSystem
        ):
            os.makedirs(storage.trial_fs_path, exist_ok=True)
            return storage.trial_fs_path
        return self.logdir

    def _tune_checkpoint_destination(self) -> str | None:
        """The trial folder's next checkpoint folder when Tune saves to local storage."""
        storage = getattr(self, "_storage", None)
        if storage is None or not isinstance(
            storage.storage_filesystem, pyarrow.fs.LocalFileSystem
        ):
            return None
        from ray.train._internal.storage import StorageContext

        name = StorageContext._make_checkpoint_dir_name(storage.current_checkpoint_index + 1)
        return os.path.join(storage.trial_fs_path, name)

    @override(Algorithm)
    def cleanup(self) -> None:
        super().cleanup()
        replay = getattr(self, "_replay", None)
        if replay is not None:
            ray.kill(replay)
            self._replay = None


def update_chunks(
    updates_per_iteration: int, env_steps_per_iteration: int, replay_size: int, catch_up: bool
) -> list[int]:
    """Update steps of one learning iteration, in chunks of at most C = ``updates_per_iteration``.

    C steps; with ``catch_up`` (the first learning iteration under
    ``warmup_catch_up``) max(C, round(C / T * replay_size)), so that the
    update-to-data ratio C / T also covers the warm-up's env steps.
    """
    total = updates_per_iteration
    if catch_up:
        total = max(total, round(updates_per_iteration / env_steps_per_iteration * replay_size))
    chunks = [updates_per_iteration] * (total // updates_per_iteration)
    if total % updates_per_iteration:
        chunks.append(total % updates_per_iteration)
    return chunks


def resource_request(
    config: DRIVEConfig | dict[str, Any], include_main_process: bool = True
) -> dict[str, float]:
    """What the Algorithm asks Ray for in all (CPU, GPU, custom resources), as Tune's
    placement group would hold it; without the main process's bundle when
    ``include_main_process`` is False (``config.build_algo()`` outside Tune)."""
    bundles = DRIVE.default_resource_request(config).bundles
    if not include_main_process:
        bundles = bundles[1:]
    total: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0.0) + float(amount)
    return {name: amount for name, amount in total.items() if amount > 0}


def resource_shortfall(
    config: DRIVEConfig | dict[str, Any],
    available: dict[str, float],
    include_main_process: bool = True,
) -> str | None:
    """One line saying what to lower when ``config`` asks for more than ``available``
    (e.g. ``ray.cluster_resources()``), or None when it fits."""
    if isinstance(config, dict):
        config = DRIVEConfig().update_from_dict(config)
    need = resource_request(config, include_main_process)
    short = {
        name: (amount, float(available.get(name, 0.0)))
        for name, amount in need.items()
        if amount > available.get(name, 0.0) + 1e-9
    }
    if not short:
        return None
    runners, learners = config.num_env_runners, config.num_learners
    parts = []
    if include_main_process:
        parts.append(f"main process {config.num_cpus_for_main_process:g} CPU")
    if runners:
        parts.append(
            f"{runners} env runner(s) x {config.num_cpus_per_env_runner:g} CPU"
            + (
                f" + {config.num_gpus_per_env_runner:g} GPU"
                if config.num_gpus_per_env_runner
                else ""
            )
        )
    if learners:
        cpus = config.num_cpus_per_learner
        if cpus == "auto":  # RLlib's default: 1 CPU, or none beside a GPU
            cpus = 0 if config.num_gpus_per_learner else 1
        parts.append(
            f"{learners} learner(s) x {cpus:g} CPU"
            + (f" + {config.num_gpus_per_learner:g} GPU" if config.num_gpus_per_learner else "")
        )
    asked = ", ".join(
        f"{amount:g} {name} (the cluster has {have:g})" for name, (amount, have) in short.items()
    )
    fixes = []
    if "CPU" in short:
        if runners:
            fixes.append("num_env_runners")
        if learners:
            fixes.append("num_learners or num_cpus_per_learner (e.g. 0.5)")
        if include_main_process and not runners and not learners:
            fixes.append("num_cpus_for_main_process")
    if "GPU" in short:
        fixes.append("num_gpus_per_learner / num_gpus_per_env_runner (0 on a CPU machine)")
    if set(short) - {"CPU", "GPU"}:
        fixes.append("replay_actor_resources / custom resources, or start nodes offering them")
    return (
        f"DRIVE asks Ray for {asked} ({', '.join(parts) or 'see config'}), so it would wait "
        f"forever: lower {', '.join(fixes) or 'the resources asked for'}, or use a larger "
        "cluster."
    )


def replay_start_error(resources: dict[str, float] | None) -> str:
    """What to change when the replay actor did not answer within the start timeout."""
    busy = (
        "its worker process did not get to run: Ray starts workers at niceness 15, so on "
        "a machine busy with other jobs they can starve (start Ray with the environment "
        "variable RAY_worker_niceness=0, or free the machine)"
    )
    if not resources:
        return f"The replay actor did not start within {REPLAY_START_TIMEOUT_S} s: {busy}."
    return (
        f"The replay actor did not start within {REPLAY_START_TIMEOUT_S} s: no node offers "
        f"its resources {resources}, or {busy}. Start a node with them (e.g. the head of "
        "cluster/aws.yaml offers `head: 1`) or change "
        "config.training(replay_actor_resources=...)."
    )


def register_module_env(env: Any) -> None:
    """Makes a gymnasium ``"module:EnvId"`` (the module registers EnvId when imported)
    usable as RLlib's env: RLlib reads a dotted string as a class path, so the id is
    registered with Tune, its creator calling ``gym.make("module:EnvId", **env_config)``
    (which imports the module in every process that makes the env)."""
    if not (isinstance(env, str) and ":" in env):
        return
    from ray.tune.registry import ENV_CREATOR, _global_registry, register_env

    if not _global_registry.contains(ENV_CREATOR, env):
        register_env(env, lambda env_config: gym.make(env, **dict(env_config)))


def _import_batch_code(_replay: Any) -> bool:
    """Runs in the replay actor: imports what `sample_learner_batch` needs (RLlib)."""
    import drive_rllib.algorithm.batch  # noqa: F401

    return True


def check_rejected_share(rows_rejected: int, rows_stored: int, max_share: float) -> None:
    """Fails the run when more than ``max_share`` of the rows pushed were rejected.

    Checked from `REJECTED_SHARE_MIN_ROWS` rows pushed on, so that a few bad rows
    among the first ones do not end a run.

    Raises:
        RuntimeError: the share is exceeded (the message says what to change).
    """
    pushed = rows_rejected + rows_stored
    if pushed < REJECTED_SHARE_MIN_ROWS or rows_rejected <= max_share * pushed:
        return
    raise RuntimeError(
        f"{rows_rejected} of {pushed} rows ({rows_rejected / pushed:.1%}) pushed to the "
        f"replay were rejected (NaN/inf, or beyond max_abs_value), more than "
        f"max_rejected_share={max_share}: the env emits bad data. The EnvRunners' logs name "
        "the first rejected row (episode, step, field). Fix or wrap the env; raise "
        "config.training(max_abs_value=...) if such magnitudes are genuine, or "
        "max_rejected_share to accept more dropped rows."
    )


def register() -> None:
    """Registers DRIVE with Tune as "DRIVE", so ``tune.Tuner("DRIVE")`` and YAML ``run: DRIVE`` work."""
    from ray.tune.registry import register_trainable

    register_trainable("DRIVE", DRIVE)
