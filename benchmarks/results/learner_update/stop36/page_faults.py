"""The compiled bfloat16 core step (the issue's sizes, one thread) with glibc's malloc as it
is, or with its heap never trimmed and nothing mmap'd (``mallopt``, argument "mallopt"):
ms per step and minor page faults per step, three times 20 steps. Run each way in fresh
processes, alternating:

    for r in 1 2 3 4; do for m in plain mallopt; do
        echo "$m $(OMP_NUM_THREADS=1 python page_faults.py $m | tr '\\n' ' ')"; done; done
"""

import ctypes
import resource
import sys
import time

if len(sys.argv) > 1 and sys.argv[1] == "mallopt":
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)

from interleaved import core_step

step = core_step(compiled=True)
for _ in range(5):
    step()
for _ in range(3):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    began = time.perf_counter()
    for _ in range(20):
        step()
    ms = (time.perf_counter() - began) / 20 * 1e3
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 20
    print(f"{ms:.2f} ms/step {faults:.0f} faults/step")
