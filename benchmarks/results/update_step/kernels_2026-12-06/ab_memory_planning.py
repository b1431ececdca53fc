"""inductor's memory_planning on / off for the compiled core step, interleaved rounds.

Each variant compiles its own copy of the step's entry function (a code object of its
own), so that the config read at compile time applies to that variant only.
"""

import statistics
import sys
import time
import types

import torch._inductor.config as inductor_config
from common import core_step, update_step

from drive_rllib.core import update

steps = {}
for name, planning in (("base", False), ("memplan", True)):
    entry = update.update_terms
    update_step.update_terms = types.FunctionType(
        entry.__code__.replace(), entry.__globals__, f"terms_{name}", entry.__defaults__
    )
    with inductor_config.patch(memory_planning=planning):
        step = core_step(compiled=True)
        start = time.time()
        for _ in range(3):
            step()
    print(name, f"compiled in {time.time() - start:.0f} s", flush=True)
    steps[name] = step
times = {name: [] for name in steps}
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
for r in range(rounds):
    names = list(steps)
    for name in names[r % 2 :] + names[: r % 2]:
        steps[name]()
        start = time.perf_counter()
        for _ in range(10):
            steps[name]()
        times[name].append((time.perf_counter() - start) * 100)
for name, ms in times.items():
    ratio = statistics.median(a / b for a, b in zip(ms, times["base"]))
    print(
        f"{name:<10} median {statistics.median(ms):.2f} ms  ratio to base {ratio:.3f}  "
        f"({' '.join(f'{x:.1f}' for x in ms)})"
    )
