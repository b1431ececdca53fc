"""`DRIVETorchLearner`: orchestrates DRIVE's update steps; holds no math of its own.

One update step (one minibatch of ``train_batch_size_per_learner`` rows):

1. merge the batch's observation moments into the RLModule's normaliser
   (summed over all Learners under DDP, so the normalisers stay identical);
2. ``forward_train``: the RLModule computes every term (model, Eq. 6, Eq. 5
   with ``policy_update="distill"``, Eq. 4) inside DDP's forward, and their
   weighted sum (the core's ``update_loss``, with the ``loss_weights`` of the
   module's spec), in the compiled step when the Learner compiles;
3. ``compute_loss_for_module`` takes that sum as the loss; every term's mean
   and every diagnostic is logged under `drive_rllib.keys` once the step is
   applied; RLlib runs one backward
   (DDP all-reduces the gradients) and steps one Adam optimizer per component
   (model, posterior, prior, value, entropy_floor);
4. Polyak update of psi_bar; the return range moves toward the quantiles of
   the rewards imagined in this step (averaged over Learners); every
   ``model_eval_interval`` steps a ranking of the ensemble members on held-out
   rows pulled from the replay actor (errors averaged over Learners), which
   sets the elites.

With ``model_fit_interval`` k > 1, f_hat is fitted on every k-th step only: on
the others its terms are zeros that still touch its parameters (DDP needs every
parameter used), and ``apply_gradients`` drops their gradients, so f_hat's
optimizer takes no step (``_hold_models``). A value-only step (``value_only_updates``:
the algorithm marks an ``update()`` call with `VALUE_ONLY` in its ``timesteps``) holds
f_hat in the same way and drops the gradients of q_phi, pi_theta and the entropy
floor too: only psi's optimizer steps (Eq. 4), psi_bar and the return range move.

Before step 1, every ``distribution_rollout_interval`` steps, a distribution
rollout from the batch's states refills the model-state buffer that Eq. 6's
start states come from; under DDP each Learner rolls out its share of the
start states and all of them add every Learner's states, so the buffers stay
identical.

Steps 1 and 4 run per minibatch in ``_update``: RLlib's
``after_gradient_based_update`` runs once per ``update()`` call, i.e. once per
``updates_per_iteration`` steps, which would slow psi_bar down by that factor.

A step whose loss or gradients hold NaN or inf is skipped as a whole: its
gradients are not applied, so weights and optimizer states stay as they were,
the normaliser's sums are put back, psi_bar and the update counter do not
move, and ``training/skipped_steps`` counts it (all Learners skip together
under DDP). ``max_skipped_updates`` consecutive skips fail the trial with
``combine_means``' message (the non-finite terms).

On a GPU every value read back to Python waits for the kernels queued before it. A
step reads one: whether the loss and the gradients are finite, checked together in
``apply_gradients`` (the skip rule above), so the backward is queued right behind the
forward. The step counter and the return range's flag are read through `HostCopy`
(from the device only after a restore wrote them), and the logged diagnostics and
statistics are one stacked copy per step that RLlib reads back when it reduces the
results; the copy also keeps them valid under CUDA graphs, whose next replay
overwrites the step's outputs.

Cost switches (``DRIVEConfig``; measured in ``benchmarks/learner_update.py``):

- ``flush_denormals``: subnormal floats are flushed to zero on the CPU thread
  that runs the update (``torch.set_flush_denormal``). Adam's moments decay
  into subnormals, and x86 CPUs take a slow path for every one of them.
- ``optimizer_implementation``: "fused" Adam kernels (one kernel per
  component, where the device has one; "foreach" otherwise), "foreach" or
  "for_loop" (torch's default on CPU).
- ``gradient_check``: "global" checks all gradients for NaN / inf at once (a
  non-finite one skips the step as above, and the loss with them);
  "per_parameter" checks the loss, then runs RLlib's own ``apply_gradients``
  (two checks per parameter); "off" checks the loss only.
- ``torch_compile_learner`` (RLlib's ``config.framework`` setting, default off):
  ``torch.compile`` of each module's update step (``update_loss``: the model
  fit, Eq. 6, Eq. 5, Eq. 4, the weighted sum and their backward pass) with RLlib's dynamo backend
  (inductor on Linux). The first update compiles for a minute or more on a CPU,
  and again when a shape first changes (the model-state buffer filling up);
  `DRIVETorchLearner.build` does the compiling, because RLlib 2.60's own hook
  compiles none of a MultiRLModule's modules.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Collection, Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.policy.sample_batch import MultiAgentBatch
from ray.rllib.utils.annotations import override

from drive_rllib import keys
from drive_rllib.algorithm.rl_module import (
    DIAGNOSTICS,
    LOSS,
    TERM_MEANS,
    DRIVETorchRLModule,
)
from drive_rllib.core import combine_means
from drive_rllib.core.spec import Precision
from drive_rllib.core.update import (
    MODEL_TERMS,
    distribution_rollout_states,
    native_bfloat16,
    resolve_precision,
)
from drive_rllib.replay.actor import ReplayHandle
from drive_rllib.replay.storage import NEXT_OBS, OBS, REWARD

logger = logging.getLogger(__name__)

#: The Learner state's entry of the torch and numpy RNG states (restored with it).
RNG_STATE = "drive_rng_state"

#: A key of ``update(timesteps=...)``: True marks every step of that call value-only.
VALUE_ONLY = "drive_value_only"
#: The parameter groups a value-only step trains.
VALUE_GROUPS = frozenset({"value"})
#: A key of ``update(timesteps=...)``: True restarts the `RESTARTED_GROUPS`' Adam states
#: before the call's first step (``restart_optimizers``).
RESTART_OPTIMIZERS = "drive_restart_optimizers"
#: The parameter groups whose optimizers ``restart_optimizers`` restarts (not f_hat's).
RESTARTED_GROUPS = ("posterior", "prior", "value", "entropy_floor")

#: ``DRIVEConfig.optimizer_implementation`` choices.
OPTIMIZER_IMPLEMENTATIONS = ("fused", "foreach", "for_loop")
#: ``DRIVEConfig.gradient_check`` choices.
GRADIENT_CHECKS = ("global", "per_parameter", "off")


def adam_options(implementation: str, params: Iterable[torch.Tensor]) -> dict[str, bool]:
    """Keywords of ``torch.optim.Adam`` (or ``AdamW``) for ``implementation`` on the params' devices.

    "fused" falls back to "foreach" where a device has no fused Adam kernel.
    """
    if implementation not in OPTIMIZER_IMPLEMENTATIONS:
        raise ValueError(
            f"optimizer_implementation must be one of {OPTIMIZER_IMPLEMENTATIONS}, "
            f"got {implementation!r}"
        )
    if implementation == "fused":
        if {p.device.type for p in params} <= _fused_adam_devices():
            return {"fused": True}
        implementation = "foreach"
    return {"foreach": implementation == "foreach"}


def _fused_adam_devices() -> set[str]:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # a torch without the helper: the two devices fused Adam always had
        return {"cpu", "cuda"}
    return set(_get_fused_kernels_supported_devices())


def all_finite(tensors: Iterable[torch.Tensor | None], foreach: bool | None = None) -> bool:
    """Whether every element of every tensor is finite, with one wait for the device.

    On a CPU (``foreach`` None there, or False): one min/max pass per tensor, which
    propagates NaN, sees +-inf and cannot overflow as a sum of squares could; several
    times faster there than ``torch.nn.utils.get_total_norm(..., inf)`` or
    ``torch._foreach_norm``. Elsewhere (``foreach`` None on an accelerator, or True): the
    inf-norm of every tensor in one ``torch._foreach_norm`` (NaN propagates through it
    too), two kernels in all instead of two per tensor.
    """
    present = [t for t in tensors if t is not None and t.numel()]
    if not present:
        return True
    if foreach is None:
        foreach = present[0].device.type != "cpu"
    if foreach:
        extremes = torch.stack(torch._foreach_norm(present, math.inf))
    else:
        extremes = torch.cat([torch.stack(torch.aminmax(t)) for t in present])
    return bool(torch.isfinite(extremes).all())


def copied_scalars(
    values: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Detached copies of scalar tensors in ``dtype``, made in one op (one ``torch.stack``).

    What the metrics logger keeps past the step must not share memory with the step's
    outputs or with buffers that later steps write: under CUDA graphs
    (``torch_compile_learner_dynamo_mode="reduce-overhead"``) the next step's replay
    overwrites the outputs
    (`tests/algorithm/test_learner.py::test_logged_metrics_outlive_the_step_outputs_they_came_from`).
    Stacked as they are (``torch.stack`` promotes mixed dtypes), then cast once: three
    aten ops for any number of values, not three per value.
    """
    if not values:
        return {}
    with torch.no_grad():
        stacked = torch.stack([v if v.dim() == 0 else v.reshape(()) for v in values.values()])
        return dict(zip(values, stacked.to(dtype).unbind()))


class DRIVETorchLearner(TorchLearner):
    """Torch Learner of DRIVE (see the module docstring for one update step)."""

    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        self._replay: ReplayHandle | None = None
        # Per module: (low, high) quantiles of the rewards imagined in the last forward pass.
        self._imagined_rewards: dict[str, torch.Tensor] = {}
        # The non-finite check of the step in progress: per module, its loss and term
        # means (checked with the gradients in apply_gradients, so that a step waits for
        # the device once), what it logs once the step is applied, and the reason of a skip.
        self._unchecked: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
        self._step_metrics: dict[str, dict[str, Any]] = {}
        self._nonfinite_error: str | None = None
        self._skip_step = False
        self.num_skipped_steps = 0
        self._consecutive_skips = 0
        self._flush_denormals = bool(self.config.flush_denormals)
        self._gradient_check = self.config.gradient_check
        for module_id in self.module.keys():  # noqa: SIM118 -- a MultiRLModule, not a dict
            self._set_precision(module_id, self.drive_module(module_id))
        if self._torch_compile_forward_train:
            # RLlib 2.60's TorchLearner.build means to compile every TorchRLModule of
            # the MultiRLModule, but tests the MultiRLModule itself
            # (``isinstance(self._module, TorchRLModule)``) and so compiles none.
            for module_id in self.module.keys():  # noqa: SIM118 -- a MultiRLModule
                self.drive_module(module_id).compile(self._torch_compile_cfg)

    def _set_precision(self, module_id: str, module: DRIVETorchRLModule) -> None:
        """Resolves the module's ``precision`` "auto" for this Learner's device (before any
        compiling, so the compiled step holds a fixed choice) and says what it runs."""
        asked = module.spec.update.precision
        precision = resolve_precision(asked, self._device)
        if precision is not asked:
            update = dataclasses.replace(module.spec.update, precision=precision)
            module.spec = dataclasses.replace(module.spec, update=update)
        if precision is Precision.BFLOAT16 and not native_bfloat16(self._device):
            logger.warning(
                "%s: precision='bfloat16' on %s, which has no bfloat16 arithmetic of its own "
                "(no AMX-BF16 or AVX512-BF16 on a CPU): torch emulates it, slower than "
                "float32. Set precision='auto' or 'float32'.",
                module_id,
                self._device,
            )
        else:
            logger.info(
                "%s: update step in %s on %s (precision=%r)",
                module_id,
                precision.value,
                self._device,
                asked.value,
            )

    @override(Learner)
    def get_state(
        self,
        components: str | Collection[str] | None = None,
        *,
        not_components: str | Collection[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """RLlib's state plus the torch and numpy RNG states, so a restored run draws
        the minibatch noise and model samples it would have drawn."""
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(RNG_STATE, components, not_components):
            state[RNG_STATE] = {
                "torch": torch.get_rng_state().numpy().copy(),
                "numpy": np.random.get_state(),
            }
        return state

    @override(Learner)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        rng = state.get(RNG_STATE)
        if rng is not None:
            torch.set_rng_state(torch.from_numpy(np.asarray(rng["torch"], dtype=np.uint8)))
            np.random.set_state(tuple(rng["numpy"]))

    def set_replay_actor(self, replay: ReplayHandle) -> None:
        """Sets the replay actor that held-out rows for ranking the ensemble come from."""
        self._replay = replay

    def drive_module(self, module_id: str) -> DRIVETorchRLModule:
        """The (DDP-unwrapped) DRIVE RLModule under ``module_id``."""
        return self.module[module_id].unwrapped()

    @override(Learner)
    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        """One Adam per parameter group of the core, each with its own learning rate."""
        learning_rates = {
            "model": config.model_lr,
            "posterior": config.posterior_lr,
            "prior": config.prior_lr,
            "value": config.value_lr,
            "entropy_floor": config.entropy_floor_lr,
        }
        groups = self.drive_module(module_id).nets.parameter_groups()
        unknown = set(groups) - set(learning_rates)
        if unknown:
            raise KeyError(f"no learning rate for the core's parameter groups {sorted(unknown)}")
        for name, params in groups.items():
            options = adam_options(config.optimizer_implementation, params)
            if name == "model" and config.model_weight_decay:
                optimizer = torch.optim.AdamW(
                    params, weight_decay=config.model_weight_decay, **options
                )
            else:
                optimizer = torch.optim.Adam(params, **options)
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=optimizer,
                params=params,
                lr_or_lr_schedule=learning_rates[name],
            )

    @override(TorchLearner)
    def _set_optimizer_state(self, state: dict[str, Any]) -> None:
        """Loads the optimizers' state, keeping this config's ``optimizer_implementation``.

        ``load_state_dict`` takes each param group's flags from the state, so a checkpoint
        written by a for-loop Adam would turn the fused optimizers back into for-loop ones.
        """
        super()._set_optimizer_state(state)
        implementation = self.config.optimizer_implementation
        for module_id in self.module.keys():  # noqa: SIM118 -- a MultiRLModule, not a dict
            for _, optimizer in self.get_optimizers_for_module(module_id):
                for group in optimizer.param_groups:
                    group.update(fused=None, foreach=None)
                    group.update(adam_options(implementation, group["params"]))

    @override(Learner)
    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """Flushes denormals on the thread that runs this ``update()`` (see the module
        docstring); marks the call's steps value-only and restarts the optimizers as its
        ``timesteps`` say (`VALUE_ONLY`, `RESTART_OPTIMIZERS`)."""
        super().before_gradient_based_update(timesteps=timesteps)
        if self._flush_denormals and not torch.set_flush_denormal(True):
            logger.info("this CPU cannot flush denormals (no SSE3); flush_denormals does nothing")
            self._flush_denormals = False
        timesteps = timesteps or {}
        value_only = bool(timesteps.get(VALUE_ONLY, False))
        for module_id in self.module.keys():  # noqa: SIM118 -- a MultiRLModule, not a dict
            self.drive_module(module_id).value_only = value_only
            if timesteps.get(RESTART_OPTIMIZERS, False):
                self.restart_optimizers(module_id)

    def restart_optimizers(self, module_id: str) -> None:
        """Empties the Adam states (moments, step counts) of the `RESTARTED_GROUPS`: their
        next step starts them afresh, as a new optimizer's would."""
        for name, optimizer in self.get_optimizers_for_module(module_id):
            if name in RESTARTED_GROUPS:
                optimizer.state.clear()

    @override(Learner)
    def compute_loss_for_module(
        self,
        *,
        module_id: str,
        config: Any,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        """The weighted sum of the terms, as ``forward_train`` computed it
        (``update_loss``); keeps the term means and diagnostics to log once the step
        is applied, as one stacked copy (`copied_scalars`).

        The loss is not checked here: a NaN / inf loss is found with the gradients in
        ``apply_gradients`` (one wait for the device per step), which then skips the
        step; the backward runs either way, so that DDP's Learners stay in step.
        """
        loss = fwd_out[LOSS]
        self._unchecked[module_id] = (loss.detach(), fwd_out[TERM_MEANS])
        # A step that holds f_hat has zeros for its terms, not the model's likelihood.
        held = () if self.drive_module(module_id).fits_model() else MODEL_TERMS
        means = {name: mean for name, mean in fwd_out[TERM_MEANS].items() if name not in held}
        logged = copied_scalars(keys.update_step_metrics(means, fwd_out[DIAGNOSTICS], loss))
        self._imagined_rewards[module_id] = torch.stack(
            [logged[keys.IMAGINED_REWARD_LOW], logged[keys.IMAGINED_REWARD_HIGH]]
        )
        self._step_metrics[module_id] = logged
        return loss

    @override(TorchLearner)
    def apply_gradients(self, gradients_dict: dict[Any, torch.Tensor]) -> None:
        """Steps every optimizer, or none when the loss or a gradient is non-finite.

        A non-finite step is skipped as a whole (``_skip`` then counts it).
        ``gradient_check="global"`` checks the loss and all the gradients in one pass
        (`all_finite`: one wait for the device) and steps the optimizers directly;
        "per_parameter" checks the loss, then runs RLlib's own ``apply_gradients`` (its
        per-parameter checks), as do a grad scaler or learning-rate scheduler classes;
        "off" checks only the loss.
        """
        unchecked, self._unchecked = self._unchecked, {}
        checked = [loss for loss, _ in unchecked.values()]
        if self._gradient_check == "global":
            checked += gradients_dict.values()
        finite = all_finite(checked)
        if self.distributed:
            flag = torch.tensor(float(finite), device=self._device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = bool(flag.item())
        if not finite:
            self._skip_step = True
            self._nonfinite_error = self._nonfinite_reason(unchecked, gradients_dict)
            return
        gradients_dict = self._hold_models(gradients_dict)
        if (
            self._gradient_check == "per_parameter"
            or self._grad_scalers is not None
            or self._lr_scheduler_classes is not None
        ):
            super().apply_gradients(gradients_dict)
            return
        for param_ref, grad in gradients_dict.items():
            self._params[param_ref].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()

    def _nonfinite_reason(
        self,
        unchecked: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]],
        gradients_dict: dict[Any, torch.Tensor],
    ) -> str:
        """Why this step is skipped (read only on this path): the non-finite loss terms
        (`combine_means`' message), else the gradients, else another Learner's step."""
        for module_id, (loss, means) in unchecked.items():
            if not bool(torch.isfinite(loss)):
                try:
                    combine_means(means, self.drive_module(module_id).loss_weights)
                except FloatingPointError as error:
                    return str(error)
        if self.distributed and all_finite(gradients_dict.values()):
            return "a non-finite loss or gradient on another Learner"
        return "non-finite gradients (the loss itself was finite)"

    def _hold_models(self, gradients_dict: dict[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
        """``gradients_dict`` without the gradients of the groups this step holds: f_hat's
        (zeros) where it did not fit f_hat (``fits_model``: ``num_updates`` moves after
        this), and every group but psi's in a value-only step. Their ``.grad`` is cleared,
        so their optimizers step nothing (Adam and AdamW skip parameters without a
        gradient: no weight decay, no moment update)."""
        held: set[int] = set()
        for module_id in self._module_optimizers:
            module = self.drive_module(module_id)
            if module.value_only:
                groups = module.nets.parameter_groups()
                params = [p for name in groups if name not in VALUE_GROUPS for p in groups[name]]
            elif not module.fits_model():
                params = list(module.nets.model.parameters())
            else:
                continue
            for param in params:
                param.grad = None
                held.add(id(param))
        if not held:
            return gradients_dict
        return {
            ref: grad for ref, grad in gradients_dict.items() if id(self._params[ref]) not in held
        }

    @override(TorchLearner)
    def _update(self, batch: dict[str, Any], **kwargs: Any) -> tuple[Any, Any, Any]:
        """One update step on one minibatch (see the module docstring)."""
        saved_moments = {
            module_id: [tensor.clone() for tensor in self._normalizer_sums(module_id)]
            for module_id in batch
        }
        for module_id, module_batch in batch.items():
            self._merge_observation_moments(module_id, module_batch)
            self._start_return_range(module_id, module_batch[REWARD])
            self._distribution_rollout(module_id, module_batch[OBS])
        self._nonfinite_error, self._skip_step = None, False
        self._unchecked.clear()
        self._step_metrics.clear()
        result = super()._update(batch, **kwargs)
        if self._skip_step:
            self._skip(saved_moments)
            return result
        self._consecutive_skips = 0
        for module_id in batch:
            logged = self._step_metrics.pop(module_id, None)
            if logged is not None:
                self.metrics.log_dict(logged, key=module_id, reduce="mean")
            module = self.drive_module(module_id)
            config = self.config.get_config_for_module(module_id)
            nets = module.nets
            nets.polyak_update(config.tau)
            self._move_return_range(module_id)
            num_updates = module.count_update()
            interval = config.model_eval_interval
            if interval and num_updates % interval == 0:
                self._rank_ensemble(module_id, config.model_eval_batch_size)
            # Copies, not float(): no wait for the device here; RLlib reads them back
            # when it reduces the iteration's results.
            statistics = {
                keys.NORMALIZER_COUNT: nets.obs_normalizer.count,
                keys.RETURN_LOW: nets.return_range.low,
                keys.RETURN_HIGH: nets.return_range.high,
            }
            if nets.model_states is not None:
                statistics[keys.MODEL_STATES] = nets.model_states.size
            self.metrics.log_dict(
                {
                    keys.MODEL_STATES: 0.0,
                    **copied_scalars(statistics, torch.float64),
                },
                key=module_id,
                window=1,
            )
            # Counters: an iteration of several update() calls (the catch-up's chunks,
            # the value-only steps) reports the last count, not the mean of the calls'.
            self.metrics.log_dict(
                {
                    keys.UPDATE_STEPS_LIFETIME: num_updates,
                    keys.SKIPPED_STEPS: self.num_skipped_steps,
                },
                key=module_id,
                window=1,
                reduce="max",
            )
        return result

    def _skip(self, saved_moments: dict[str, list[torch.Tensor]]) -> None:
        """Undoes what a skipped step changed before its gradients (the normalisers' sums);
        its terms and diagnostics are not logged."""
        self._imagined_rewards.clear()
        self._step_metrics.clear()
        for module_id, saved in saved_moments.items():
            for tensor, value in zip(self._normalizer_sums(module_id), saved):
                tensor.copy_(value)
        self.num_skipped_steps += 1
        self._consecutive_skips += 1
        error, self._nonfinite_error, self._skip_step = self._nonfinite_error, None, False
        for module_id in saved_moments:
            self.metrics.log_value(
                (module_id, keys.SKIPPED_STEPS), self.num_skipped_steps, window=1, reduce="max"
            )
        limit = self.config.max_skipped_updates
        if self._consecutive_skips >= limit:
            raise FloatingPointError(
                f"{self._consecutive_skips} consecutive update steps were skipped "
                f"(max_skipped_updates={limit}); their gradients were not applied. The "
                f"last one: {error}"
            )
        logger.warning(
            "Skipped update step (%d so far, %d in a row): %s",
            self.num_skipped_steps,
            self._consecutive_skips,
            error,
        )

    def _normalizer_sums(self, module_id: str) -> list[torch.Tensor]:
        nets = self.drive_module(module_id).nets
        normalizers = [nets.obs_normalizer, nets.target_normalizer]
        return [
            tensor
            for normalizer in normalizers
            if normalizer is not None
            for tensor in (normalizer.count, normalizer.total, normalizer.total_sq)
        ]

    @override(Learner)
    def _log_steps_trained_metrics(self, batch: MultiAgentBatch) -> None:
        # RLlib's minibatch iterator stamps every minibatch with the env steps of
        # the whole C x B batch; count each minibatch row once instead.
        rows = max(len(module_batch) for module_batch in batch.policy_batches.values())
        super()._log_steps_trained_metrics(MultiAgentBatch(batch.policy_batches, env_steps=rows))

    # -- statistics shared by all Learners -------------------------------------------------

    def _merge_observation_moments(self, module_id: str, module_batch: dict[str, Any]) -> None:
        """Merges the batch's observations (and f_hat's targets (s' - s, r)) into the normalisers."""
        nets = self.drive_module(module_id).nets
        obs = module_batch[OBS].reshape(module_batch[OBS].shape[0], -1)
        rows = [(nets.obs_normalizer, obs)]
        if nets.target_normalizer is not None:
            next_obs = module_batch[NEXT_OBS].reshape(obs.shape)
            target = torch.cat([next_obs - obs, module_batch[REWARD].reshape(-1, 1)], dim=-1)
            rows.append((nets.target_normalizer, target))
        for normalizer, x in rows:
            count, total, total_sq = normalizer.batch_sums(x)
            if self.distributed:
                sums = torch.cat([count.reshape(1), total, total_sq])
                dist.all_reduce(sums, op=dist.ReduceOp.SUM)
                count, total, total_sq = sums[0], *sums[1:].chunk(2)
            normalizer.update_from_sums(count, total, total_sq)

    def _mean_over_learners(self, x: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            x = x.clone()
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
            x /= dist.get_world_size()
        return x

    def _start_return_range(self, module_id: str, reward: torch.Tensor) -> None:
        """Sets the return range from the real rewards' 1% / 99% quantiles, before the first step."""
        nets = self.drive_module(module_id).nets
        if nets.return_range.is_set:
            return
        reward = reward.reshape(-1).float()
        quantiles = torch.quantile(reward, torch.tensor([0.01, 0.99], device=reward.device))
        low, high = self._mean_over_learners(quantiles)
        spec = self.drive_module(module_id).spec.update
        nets.return_range.update(low, high, spec.gamma, spec.return_range_rate)

    def _move_return_range(self, module_id: str) -> None:
        """Moves the return range toward the quantiles of this step's imagined rewards."""
        quantiles = self._imagined_rewards.pop(module_id, None)
        if quantiles is None:
            return
        low, high = self._mean_over_learners(quantiles)
        spec = self.drive_module(module_id).spec.update
        self.drive_module(module_id).nets.return_range.update(
            low, high, spec.gamma, spec.return_range_rate
        )

    def _distribution_rollout(self, module_id: str, obs: torch.Tensor) -> None:
        """Every ``distribution_rollout_interval`` steps, rolls out f_hat from the batch's
        states and adds the imagined states of every Learner to the model-state buffer."""
        module = self.drive_module(module_id)
        spec = module.spec.update
        buffer = module.nets.model_states
        interval = spec.distribution_rollout_interval
        if buffer is None or not interval or module.updates_done() % interval:
            return
        world = dist.get_world_size() if self.distributed else 1
        share = max(1, spec.distribution_rollout_batch // world)
        obs = obs.reshape(obs.shape[0], -1).float()[:share]
        states = distribution_rollout_states(module.nets, obs, spec)
        if self.distributed:
            counts = [
                torch.zeros((), dtype=torch.int64, device=states.device) for _ in range(world)
            ]
            dist.all_gather(counts, torch.tensor(states.shape[0], device=states.device))
            padded = torch.zeros(int(max(counts)), states.shape[1], device=states.device)
            padded[: states.shape[0]] = states
            gathered = [torch.zeros_like(padded) for _ in range(world)]
            dist.all_gather(gathered, padded)
            states = torch.cat([g[: int(c)] for g, c in zip(gathered, counts)])
        buffer.add(states)

    def _rank_ensemble(self, module_id: str, batch_size: int) -> None:
        """Sets the elites from per-member errors on held-out replay rows (mean over Learners)."""
        if self._replay is None:
            raise RuntimeError(
                "DRIVETorchLearner has no replay actor to draw held-out rows from; the "
                "DRIVE algorithm hands it over in setup()."
            )
        module = self.drive_module(module_id)
        holdout = self._replay.call("sample", batch_size, "holdout")
        errors = self._mean_over_learners(module.holdout_errors(holdout))
        if not bool(torch.isfinite(errors).all()):
            # Replay rows are checked before they are stored, so this takes a model that
            # diverged on them: keep the elites rather than rank on NaN/inf.
            logger.warning(
                "Ensemble ranking skipped: held-out errors %s are not all finite; the elites "
                "stay %s.",
                [round(value, 4) if math.isfinite(value) else value for value in errors.tolist()],
                module.nets.model.elite_idx.tolist(),
            )
            self.metrics.log_value((module_id, keys.MODEL_RANKING_SKIPPED), 1, reduce="sum")
            return
        module.nets.model.set_elites(errors)
        elites = module.nets.model.elite_idx
        self.metrics.log_dict(
            {
                keys.MODEL_HOLDOUT_ERROR: errors[elites].mean().item(),
                keys.MODEL_HOLDOUT_ERROR_ALL: errors.mean().item(),
            },
            key=module_id,
            window=1,
        )
