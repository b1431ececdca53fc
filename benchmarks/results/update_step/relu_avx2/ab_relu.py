"""F.relu against `networks.relu` (backward grad * sign(out)) in the compiled core step, interleaved rounds, one process.

Both variants compile their own copy of the step's entry function; before each timed
call ``networks.ACTIVATIONS`` holds that variant's ReLU, so each variant runs the graph
it was compiled with (no recompiles: the script prints the compile count).
Usage: ``OMP_NUM_THREADS=1 python ab_relu.py [ROUNDS] [PRECISION]``.
"""

import pathlib
import statistics
import sys
import time
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/
from common import core_step, update_step
from timing_environment import machine

from drive_rllib.core import networks, update
from drive_rllib.core.spec import Activation

precision = sys.argv[2] if len(sys.argv) > 2 else "float32"
print(machine())
variants = {"F.relu": F.relu, "sign_grad": networks.relu}
steps = {}
for name, fn in variants.items():
    networks.ACTIVATIONS[Activation.RELU] = fn
    entry = update.update_terms
    update_step.update_terms = types.FunctionType(
        entry.__code__.replace(), entry.__globals__, f"terms_{name}", entry.__defaults__
    )
    step = core_step(compiled=True, precision=precision)
    start = time.time()
    for _ in range(3):
        step()
    print(name, f"compiled in {time.time() - start:.0f} s", flush=True)
    steps[name] = step
compiles = torch._dynamo.utils.counters["stats"]["unique_graphs"]
times = {name: [] for name in steps}
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
for r in range(rounds):
    names = list(steps)
    for name in names[r % 2 :] + names[: r % 2]:
        networks.ACTIVATIONS[Activation.RELU] = variants[name]
        steps[name]()
        start = time.perf_counter()
        for _ in range(10):
            steps[name]()
        times[name].append((time.perf_counter() - start) * 100)
assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiles, "recompiled"
print(f"{precision}, {rounds} rounds of 10 steps, graphs compiled: {compiles}")
for name, ms in times.items():
    ratio = statistics.median(a / b for a, b in zip(ms, times["F.relu"]))
    print(
        f"{name:<10} median {statistics.median(ms):.2f} ms  ratio to F.relu {ratio:.3f}  "
        f"({' '.join(f'{x:.1f}' for x in ms)})"
    )
