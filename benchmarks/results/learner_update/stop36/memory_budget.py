"""The compiled bfloat16 core step (the issue's sizes, one thread) with AOTAutograd's
partitioner at its default (an activation memory budget of 1: save what the backward
needs) or with ``activation_memory_budget`` below 1 (recompute cheap activations in the
backward, so fewer tensors pass from the forward graph to the backward one): ms per step,
three times 20 steps. Run each way in fresh processes, alternating, each with an inductor
cache of its own:

    for r in 1 2 3; do for b in 1.0 0.5; do
        echo "$b $(TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_budget_$b OMP_NUM_THREADS=1 \\
            python memory_budget.py $b | tr '\\n' ' ')"; done; done
"""

import sys
import time

import torch._functorch.config as functorch_config
from interleaved import core_step

functorch_config.activation_memory_budget = float(sys.argv[1])
step = core_step(compiled=True)
for _ in range(5):
    step()
for _ in range(3):
    began = time.perf_counter()
    for _ in range(20):
        step()
    print(f"{(time.perf_counter() - began) / 20 * 1e3:.2f} ms/step")
