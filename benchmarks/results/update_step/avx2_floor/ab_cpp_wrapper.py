"""inductor's C++ wrapper on / off for the compiled float32 core step, interleaved rounds.

`update.inductor_options` turns the C++ wrapper on for CPUs (measured faster on the AMX
machine); this times the headline-size core step with and without it, rounds of 10 steps.
Usage: ``OMP_NUM_THREADS=1 python ab_cpp_wrapper.py [ROUNDS]``.
"""

import pathlib
import statistics
import sys
import time
import types

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
from common import core_step, update_step

from drive_rllib.core import update

variants = {
    "cpp_wrapper": {"fallback_random": True, "cpp_wrapper": True},
    "python_wrapper": {"fallback_random": True},
}
steps = {}
for name, options in variants.items():
    update_step.inductor_options = lambda device, options=options: options
    entry = update.update_terms
    update_step.update_terms = types.FunctionType(
        entry.__code__.replace(), entry.__globals__, f"terms_{name}", entry.__defaults__
    )
    step = core_step(compiled=True, precision="float32")
    start = time.time()
    for _ in range(3):
        step()
    print(name, f"compiled {time.time() - start:.0f} s", flush=True)
    steps[name] = step
times = {name: [] for name in steps}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 7):
    names = list(steps)
    for name in names[r % 2 :] + names[: r % 2]:
        steps[name]()
        start = time.perf_counter()
        for _ in range(10):
            steps[name]()
        times[name].append((time.perf_counter() - start) * 100)
for name, ms in times.items():
    ratio = statistics.median(a / b for a, b in zip(ms, times["cpp_wrapper"]))
    print(
        f"{name} median {statistics.median(ms):.2f} ratio {ratio:.3f} "
        f"({' '.join(f'{x:.1f}' for x in ms)})"
    )
