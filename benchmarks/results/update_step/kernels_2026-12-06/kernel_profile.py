"""torch.profiler of the compiled core step, inductor's kernels named (cpp.enable_kernel_profile)."""

import sys
import time

import torch._inductor.config as inductor_config
from common import core_step
from torch.profiler import ProfilerActivity, profile

inductor_config.cpp.enable_kernel_profile = True
step = core_step(compiled=True, precision=sys.argv[1] if len(sys.argv) > 1 else "bfloat16")
start = time.time()
for _ in range(3):
    step()
print(f"compile {time.time() - start:.1f} s")
for _ in range(3):
    start = time.perf_counter()
    for _ in range(10):
        step()
    print(f"ms/step {(time.perf_counter() - start) * 100:.2f}")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(10):
        step()
events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
print(f"total self ms/step {sum(e.self_cpu_time_total for e in events) / 10 / 1000:.2f}")
for e in events[:70]:
    print(
        f"{e.self_cpu_time_total / 10 / 1000:7.3f} ms/step {e.count // 10:5d}/step "
        f"{e.self_cpu_time_total / max(e.count, 1):8.1f} us  {e.key[:110]}"
    )
