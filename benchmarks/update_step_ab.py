"""The DRIVE update step of two checkouts, interleaved in one process: CPU and wall ms per step.

`update_step.py` measures wall time, which on a shared machine moves with
the load by a factor of two or more between runs. This script loads the
core of another checkout (``--old``, e.g. ``git archive <commit> | tar -x -C
/tmp/old``) under another package name next to this checkout's, builds the
same update step with each (the workload of `update_step.py`: HalfCheetah
sizes, batch 256, E = 7, 5 elites, one torch thread), and alternates them:
each repeat times ``--steps`` steps of one, then of the other. It reports the
median thread CPU time and wall time per step of each and their ratio, so a
change of load hits both sides alike.

    python benchmarks/update_step_ab.py --old /tmp/old
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType

import torch

OBS_DIM, ACTION_DIM, BATCH, ENSEMBLE = 17, 6, 256, 7


def load_core(checkout: pathlib.Path, package: str) -> ModuleType:
    """``checkout``'s ``drive_rllib`` imported as ``package`` (imports rewritten to match)."""
    target = pathlib.Path(tempfile.mkdtemp(prefix="ab_")) / package
    shutil.copytree(checkout / "drive_rllib", target)
    for path in target.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("drive_rllib", package), encoding="utf-8")
    sys.path.insert(0, str(target.parent))
    return importlib.import_module(f"{package}.core")


def step_fn(core: ModuleType, horizon: int, num_samples: int) -> Callable[[], None]:
    """One full update step (forward, one backward, Adam per component, Polyak) with ``core``,
    whichever API it has (settings as keywords before issue 14, as specs after)."""
    batch = {
        "obs": torch.randn(BATCH, OBS_DIM),
        "action": torch.rand(BATCH, ACTION_DIM) * 2 - 1,
        "reward": torch.randn(BATCH),
        "next_obs": torch.randn(BATCH, OBS_DIM),
        "terminated": torch.zeros(BATCH),
    }
    if hasattr(core, "UpdateSpec"):
        networks = core.NetworkSpec(ensemble_size=ENSEMBLE, num_elites=5)
        update = core.UpdateSpec(horizon=horizon, num_samples=num_samples, gamma=0.99)
        nets = core.DRIVENetworks(OBS_DIM, ACTION_DIM, networks)
        weights = core.loss_weights(update, networks)

        def terms() -> dict:
            return core.update_terms(nets, batch, update)[0]
    else:
        nets = core.DRIVENetworks(OBS_DIM, ACTION_DIM, ensemble_size=ENSEMBLE, num_elites=5)
        weights = core.loss_weights(alpha=1.0)

        def terms() -> dict:
            return core.update_terms(
                nets, batch, horizon=horizon, num_samples=num_samples, gamma=0.99
            )[0]

    optimizers = [
        torch.optim.Adam(p, lr=3e-4, fused=True) for p in nets.parameter_groups().values()
    ]
    nets.obs_normalizer.update(batch["obs"])

    def step() -> None:
        loss = core.combine_terms(terms(), weights)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        nets.polyak_update(0.005)

    return step


def timed(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """(thread CPU ms, wall ms) per step over ``steps`` steps."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return (time.thread_time() - cpu) * 1000 / steps, (time.perf_counter() - wall) * 1000 / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, type=pathlib.Path, help="the other checkout")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cores = {
        "old": load_core(args.old, "drive_rllib_old"),
        "new": load_core(pathlib.Path(__file__).resolve().parents[1], "drive_rllib_new"),
    }
    print(
        f"old: {args.old}, new: this checkout; 1 torch thread, batch {BATCH}, E={ENSEMBLE}, "
        f"median of {args.repeats} alternating repeats x {args.steps} steps; "
        f"loadavg {os.getloadavg()[0]:.1f} at the start"
    )
    print(
        "\n| H | N | old CPU ms | new CPU ms | new/old CPU | old wall ms | new wall ms | new/old wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for num_samples in args.samples:
        for horizon in args.horizons:
            torch.manual_seed(0)
            steps = {name: step_fn(core, horizon, num_samples) for name, core in cores.items()}
            for step in steps.values():  # warm-up
                timed(step, 2)
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
            for repeat in range(args.repeats):
                order = list(steps) if repeat % 2 == 0 else list(reversed(steps))
                for name in order:
                    samples[name].append(timed(steps[name], args.steps))
            cpu = {n: statistics.median(s[0] for s in samples[n]) for n in samples}
            wall = {n: statistics.median(s[1] for s in samples[n]) for n in samples}
            print(
                f"| {horizon} | {num_samples} | {cpu['old']:.1f} | {cpu['new']:.1f} | "
                f"{cpu['new'] / cpu['old']:.3f} | {wall['old']:.1f} | {wall['new']:.1f} | "
                f"{wall['new'] / wall['old']:.3f} |",
                flush=True,
            )
    print(f"\nloadavg {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
