"""The core step with and without Eq. 4's imagined steps (README in this folder).

Run from the repository root; ``--compile`` compiles both steps (inductor).
"""

import dataclasses
import statistics
import sys
import time

import torch

sys.path.insert(0, "benchmarks")  # run from the repository root
import update_step as us

from drive_rllib.core import update

torch.set_num_threads(1)
compiled = "--compile" in sys.argv
full_target = update.value_target


def short_target(nets, shared, reward, next_obs, terminated, spec):
    """Eq. 4's target with no imagined steps (H 1: the distributional TD target)."""
    return full_target(
        nets, shared, reward, next_obs, terminated, dataclasses.replace(spec, horizon=1)
    )


def ms_per_step(step, n=10):
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) * 1000 / n


sizes = {"precision": "bfloat16", "compiled": compiled}
targets = {"full": full_target, "short": short_target}
steps = {}
for name, target in targets.items():
    update.value_target = target
    steps[name] = us.drive_step_fn(5, 1, 256, 7, (200, 200, 200, 200), **sizes)
    for _ in range(3):  # warm (and compile)
        steps[name]()
times = {name: [] for name in steps}
for _ in range(5):
    for name, step in steps.items():
        update.value_target = targets[name]
        times[name].append(ms_per_step(step))
update.value_target = full_target
print({name: round(statistics.median(t), 1) for name, t in times.items()})
