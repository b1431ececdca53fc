"""f_hat's fit on a thread of its own, beside the rest of the update step.

Within one DRIVE update step, f_hat's fit (``fit_terms``, forward and backward) and the
rest of the step (Eq. 6, Eq. 5, Eq. 4) share only the batch and the normaliser, and
both only read those. Eq. 6 and Eq. 4 hold f_hat fixed (its elites' parameters are
detached), and the fit reaches no parameter but f_hat's. So the fit can run on a second
CPU core while the Learner's thread computes the rest. torch's kernels release the GIL,
so the two threads run in parallel. Nothing in the gradients changes:

- f_hat's gradients are the fit's alone, as in the one-graph step;
- every other parameter's gradients are the rest's alone;
- the fit's one random draw, its bootstrap rows, is made on the Learner's thread first,
  where ``update_terms`` makes it, so every later draw stays where it was.

``DRIVEConfig.model_fit_thread`` turns this on for a Learner without DDP
(``num_learners`` 0 or 1). One `ModelFitJob` per update step:

1. `ModelFitThread.start` draws the bootstrap and hands the fit to the thread;
2. the RLModule runs ``update_terms(..., fit_apart=True)`` meanwhile;
3. the Learner waits for `ModelFitJob.terms` to weigh and log them with the rest;
4. after the backward of the rest, it waits for `ModelFitJob.gradients`, f_hat's
   gradients from ``torch.autograd.grad``, and sets them on f_hat's parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from drive_rllib.core import combine_terms
from drive_rllib.core.networks import DRIVENetworks
from drive_rllib.core.spec import Precision
from drive_rllib.core.update import bootstrap_rows

#: ``fit_terms`` or its compiled version: (nets, batch, boot, precision) -> model terms.
FitFn = Callable[[DRIVENetworks, dict[str, Tensor], Tensor, Precision], dict[str, Tensor]]


class ModelFitJob:
    """One update step's fit of f_hat, running on a `ModelFitThread`."""

    def __init__(self) -> None:
        self._terms: Future[dict[str, Tensor]] = Future()
        self._gradients: Future[list[Tensor | None]] = Future()

    def terms(self) -> dict[str, Tensor]:
        """The model terms ([B] each, detached), once the fit's forward is done; raises
        what the forward raised."""
        return self._terms.result()

    def gradients(self) -> list[Tensor | None]:
        """f_hat's gradients, one per ``nets.model.parameters()`` entry (None where the
        fit does not reach a parameter), once the backward is done; raises what the
        fit raised."""
        return self._gradients.result()

    def wait(self) -> None:
        """Waits for the job to finish, whatever it raised (before an error leaves the
        update step, so that no fit runs on into the next one)."""
        with contextlib.suppress(BaseException):
            self._gradients.result()


class ModelFitThread:
    """A worker thread that runs f_hat's fit of each update step (see the module
    docstring). ``flush_denormals`` flushes subnormal floats on that thread too
    (``torch.set_flush_denormal`` is per thread)."""

    def __init__(self, flush_denormals: bool = False) -> None:
        self._flush_denormals = flush_denormals
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drive-model-fit")

    def start(
        self,
        fit: FitFn,
        nets: DRIVENetworks,
        batch: dict[str, Tensor],
        precision: Precision,
        weights: dict[str, float],
    ) -> ModelFitJob:
        """Draws the fit's bootstrap here, then runs ``fit`` and the backward of its
        weighted terms (``combine_terms`` with the model terms' ``weights``) on the thread."""
        obs = batch["obs"]
        boot = bootstrap_rows(nets.model, obs.shape[0], obs.device)
        job = ModelFitJob()
        self._executor.submit(self._run, job, fit, nets, batch, boot, precision, weights)
        return job

    def _run(
        self,
        job: ModelFitJob,
        fit: FitFn,
        nets: DRIVENetworks,
        batch: dict[str, Tensor],
        boot: Tensor,
        precision: Precision,
        weights: dict[str, float],
    ) -> None:
        try:
            if self._flush_denormals:
                torch.set_flush_denormal(True)
            terms = fit(nets, batch, boot, precision)
            loss = combine_terms(terms, weights, check_finite=False)
        except BaseException as error:  # noqa: BLE001 -- handed to the Learner's thread, which raises it
            job._terms.set_exception(error)
            job._gradients.set_exception(error)
            return
        job._terms.set_result({name: term.detach() for name, term in terms.items()})
        try:
            gradients = torch.autograd.grad(loss, list(nets.model.parameters()), allow_unused=True)
        except BaseException as error:  # noqa: BLE001 -- as above
            job._gradients.set_exception(error)
            return
        job._gradients.set_result(list(gradients))

    def shutdown(self) -> None:
        """Ends the thread once its job is done."""
        self._executor.shutdown(wait=True)
