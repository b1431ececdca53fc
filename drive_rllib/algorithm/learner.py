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
4. Polyak update of psi_bar; the return range moves toward the quantiles of
   the rewards imagined in this step (averaged over Learners); every
   ``model_eval_interval`` steps a ranking of the ensemble members on held-out
   rows pulled from the replay actor (errors averaged over Learners), which
   sets the elites.

Before step 1, every ``distribution_rollout_interval`` steps, a distribution
rollout from the batch's states refills the model-state buffer that Eq. 6's
start states come from; under DDP each Learner rolls out its share of the
start states and all of them add every Learner's states, so the buffers stay
identical.

Steps 1 and 4 run per minibatch in ``_update``: RLlib's
``after_gradient_based_update`` runs once per ``update()`` call, i.e. once per
``updates_per_iteration`` steps, which would slow psi_bar down by that factor.
"""

from __future__ import annotations

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
from drive_rllib.core.update import distribution_rollout_states
from drive_rllib.replay.storage import NEXT_OBS, OBS, REWARD


class DRIVETorchLearner(TorchLearner):
    """Torch Learner of DRIVE (see the module docstring for one update step)."""

    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        self._replay: ray.actor.ActorHandle | None = None
        # Per module: (low, high) quantiles of the rewards imagined in the last forward pass.
        self._imagined_rewards: dict[str, torch.Tensor] = {}
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
            if name == "model" and config.model_weight_decay:
                optimizer = torch.optim.AdamW(params, weight_decay=config.model_weight_decay)
            else:
                optimizer = torch.optim.Adam(params)
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=optimizer,
                params=params,
                lr_or_lr_schedule=learning_rates[name],
            )

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
        diagnostics = fwd_out[DIAGNOSTICS]
        self._imagined_rewards[module_id] = torch.stack(
            [diagnostics[keys.IMAGINED_REWARD_LOW], diagnostics[keys.IMAGINED_REWARD_HIGH]]
        ).detach()
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
            self._merge_observation_moments(module_id, module_batch)
            self._start_return_range(module_id, module_batch[REWARD])
            self._distribution_rollout(module_id, module_batch[OBS])
        result = super()._update(batch, **kwargs)
        for module_id in batch:
            module = self.drive_module(module_id)
            config = self.config.get_config_for_module(module_id)
            module.nets.polyak_update(config.tau)
            self._move_return_range(module_id)
            module.num_updates += 1
            num_updates = int(module.num_updates)
            interval = config.model_eval_interval
            if interval and num_updates % interval == 0:
                self._rank_ensemble(module_id, config.model_eval_batch_size)
            self.metrics.log_dict(
                {
                    keys.UPDATE_STEPS_LIFETIME: num_updates,
                    keys.NORMALIZER_COUNT: float(module.nets.obs_normalizer.count),
                    keys.RETURN_LOW: float(module.nets.return_range.low),
                    keys.RETURN_HIGH: float(module.nets.return_range.high),
                    keys.MODEL_STATES: 0.0
                    if module.nets.model_states is None
                    else float(module.nets.model_states.size),
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
        if buffer is None or not interval or int(module.num_updates) % interval:
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
