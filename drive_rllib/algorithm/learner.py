"""`DRIVETorchLearner`: orchestrates DRIVE's update steps; holds no math of its own.

One update step (one minibatch of ``train_batch_size_per_learner`` rows):

1. merge the batch's observation moments into the RLModule's normaliser
   (summed over all Learners under DDP, so the normalisers stay identical);
2. ``forward_train``: the RLModule computes every term (model, Eq. 6, Eq. 5
   with ``policy_update="distill"``, Eq. 4) inside DDP's forward;
3. ``compute_loss_for_module`` weights them with the weights built once in
   ``build`` (the core's ``loss_weights`` of the module's spec) and sums them
   into one scalar (``combine_terms``), and logs every term and diagnostic
   under `drive_rllib.keys`; RLlib runs one backward (DDP all-reduces the
   gradients) and steps one Adam optimizer per component (model, posterior,
   prior, value, entropy_floor);
4. Polyak update of psi_bar, and every ``model_eval_interval`` steps a ranking
   of the ensemble members on held-out rows pulled from the replay actor
   (errors averaged over Learners), which sets the elites.

Steps 1 and 4 run per minibatch in ``_update``: RLlib's
``after_gradient_based_update`` runs once per ``update()`` call, i.e. once per
``updates_per_iteration`` steps, which would slow psi_bar down by that factor.

Cost switches (``DRIVEConfig``; measured in ``benchmarks/learner_update.py``):

- ``flush_denormals``: subnormal floats are flushed to zero on the CPU thread
  that runs the update (``torch.set_flush_denormal``). Adam's moments decay
  into subnormals, and x86 CPUs take a slow path for every one of them.
- ``optimizer_implementation``: "fused" Adam kernels (one kernel per
  component, where the device has one; "foreach" otherwise), "foreach" or
  "for_loop" (torch's default on CPU).
- ``gradient_check``: "global" checks all gradients for NaN / inf at once and
  skips the whole update step if one is not finite (``combine_terms`` has
  already checked the loss); "per_parameter" is RLlib's own
  ``apply_gradients`` (two checks per parameter); "off" checks nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.policy.sample_batch import MultiAgentBatch
from ray.rllib.utils.annotations import override

from drive_rllib import keys
from drive_rllib.algorithm.rl_module import DIAGNOSTICS, TERMS, DRIVETorchRLModule
from drive_rllib.core import combine_terms, loss_weights
from drive_rllib.replay.storage import OBS

logger = logging.getLogger(__name__)

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


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite: one min/max pass each, one sync.

    Min and max propagate NaN and see +-inf, and cannot overflow as a sum could; on CPU
    this is several times faster than ``torch.nn.utils.get_total_norm(..., inf)``.
    """
    extremes = [torch.stack(torch.aminmax(t)) for t in tensors if t is not None and t.numel()]
    return not extremes or bool(torch.isfinite(torch.cat(extremes)).all())


class DRIVETorchLearner(TorchLearner):
    """Torch Learner of DRIVE (see the module docstring for one update step)."""

    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        self._replay: ray.actor.ActorHandle | None = None
        self._flush_denormals = bool(self.config.flush_denormals)
        self._gradient_check = self.config.gradient_check
        self.num_updates_skipped = 0
        # The weight of every loss term, per module, from the module's own spec.
        self._loss_weights: dict[str, dict[str, float]] = {}
        for module_id in self.module.keys():  # noqa: SIM118 -- a MultiRLModule, not a dict
            spec = self.drive_module(module_id).spec
            self._loss_weights[module_id] = loss_weights(spec.update, spec.networks)

    def set_replay_actor(self, replay: ray.actor.ActorHandle) -> None:
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
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(
                    params, **adam_options(config.optimizer_implementation, params)
                ),
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
        """Flushes denormals on the thread that runs this ``update()`` (see the module docstring)."""
        super().before_gradient_based_update(timesteps=timesteps)
        if self._flush_denormals and not torch.set_flush_denormal(True):
            logger.info("this CPU cannot flush denormals (no SSE3); flush_denormals does nothing")
            self._flush_denormals = False

    @override(TorchLearner)
    def apply_gradients(self, gradients_dict: dict[Any, torch.Tensor]) -> None:
        """Steps every optimizer; NaN / inf gradients skip the step (``gradient_check``).

        With a grad scaler or learning-rate scheduler classes (RLlib's own
        mechanisms), or ``gradient_check="per_parameter"``, RLlib's
        ``apply_gradients`` runs instead.
        """
        if (
            self._gradient_check == "per_parameter"
            or self._grad_scalers is not None
            or self._lr_scheduler_classes is not None
        ):
            super().apply_gradients(gradients_dict)
            return
        for param_ref, grad in gradients_dict.items():
            self._params[param_ref].grad = grad
        if self._gradient_check == "global" and not all_finite(gradients_dict.values()):
            self.num_updates_skipped += 1
            logger.warning(
                "a NaN or infinite gradient: update step skipped (%d so far)",
                self.num_updates_skipped,
            )
            for module_id in self._module_optimizers:
                self.metrics.log_value(
                    (module_id, keys.UPDATES_SKIPPED_NON_FINITE), 1, reduce="sum"
                )
            return
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()

    @override(Learner)
    def compute_loss_for_module(
        self,
        *,
        module_id: str,
        config: Any,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        """The weighted sum of the terms ``forward_train`` computed; logs terms and diagnostics."""
        terms = fwd_out[TERMS]
        loss = combine_terms(terms, self._loss_weights[module_id])
        logged = keys.update_step_metrics(
            {name: term.detach().mean() for name, term in terms.items()},
            {key: value.detach() for key, value in fwd_out[DIAGNOSTICS].items()},
            loss.detach(),
        )
        self.metrics.log_dict(logged, key=module_id, reduce="mean")
        return loss

    @override(TorchLearner)
    def _update(self, batch: dict[str, Any], **kwargs: Any) -> tuple[Any, Any, Any]:
        """One update step on one minibatch (see the module docstring)."""
        for module_id, module_batch in batch.items():
            self._merge_observation_moments(module_id, module_batch[OBS])
        result = super()._update(batch, **kwargs)
        for module_id in batch:
            module = self.drive_module(module_id)
            config = self.config.get_config_for_module(module_id)
            module.nets.polyak_update(config.tau)
            module.num_updates += 1
            num_updates = int(module.num_updates)
            interval = config.model_eval_interval
            if interval and num_updates % interval == 0:
                self._rank_ensemble(module_id, config.model_eval_batch_size)
            self.metrics.log_dict(
                {
                    keys.UPDATE_STEPS_LIFETIME: num_updates,
                    keys.NORMALIZER_COUNT: float(module.nets.obs_normalizer.count),
                },
                key=module_id,
                window=1,
            )
        return result

    @override(Learner)
    def _log_steps_trained_metrics(self, batch: MultiAgentBatch) -> None:
        # RLlib's minibatch iterator stamps every minibatch with the env steps of
        # the whole C x B batch; count each minibatch row once instead.
        rows = max(len(module_batch) for module_batch in batch.policy_batches.values())
        super()._log_steps_trained_metrics(MultiAgentBatch(batch.policy_batches, env_steps=rows))

    # -- statistics shared by all Learners -------------------------------------------------

    def _merge_observation_moments(self, module_id: str, obs: torch.Tensor) -> None:
        normalizer = self.drive_module(module_id).nets.obs_normalizer
        count, total, total_sq = normalizer.batch_sums(obs.reshape(obs.shape[0], -1))
        if self.distributed:
            sums = torch.cat([count.reshape(1), total, total_sq])
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
            count, total, total_sq = sums[0], *sums[1:].chunk(2)
        normalizer.update_from_sums(count, total, total_sq)

    def _rank_ensemble(self, module_id: str, batch_size: int) -> None:
        """Sets the elites from per-member errors on held-out replay rows (mean over Learners)."""
        if self._replay is None:
            raise RuntimeError(
                "DRIVETorchLearner has no replay actor to draw held-out rows from; the "
                "DRIVE algorithm hands it over in setup()."
            )
        module = self.drive_module(module_id)
        holdout = ray.get(self._replay.sample.remote(batch_size, "holdout"))
        errors = module.holdout_errors(holdout)
        if self.distributed:
            dist.all_reduce(errors, op=dist.ReduceOp.SUM)
            errors /= dist.get_world_size()
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
