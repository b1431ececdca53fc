"""inductor's C++ wrapper on / off for the compiled float32 core step, interleaved rounds.

`update.inductor_options` turns the C++ wrapper on for CPUs (measured faster on the AMX
machine); this times the headline-size core step with and without it, rounds of 10 steps.
Usage: ``OMP_NUM_THREADS=1 python ab_cpp_wrapper.py [ROUNDS]``.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
from common import compiled_variant, interleaved_rounds, update_step

variants = {
    "cpp_wrapper": {"fallback_random": True, "cpp_wrapper": True},
    "python_wrapper": {"fallback_random": True},
}
steps = {}
for name, options in variants.items():
    update_step.inductor_options = lambda device, options=options: options
    steps[name] = compiled_variant(name, "float32")
interleaved_rounds(steps, int(sys.argv[1]) if len(sys.argv) > 1 else 7, base="cpp_wrapper")
