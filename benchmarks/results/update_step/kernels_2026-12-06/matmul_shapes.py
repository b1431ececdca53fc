"""The eager bfloat16 core step's matmuls, grouped by shape (the compiled step calls the same)."""

from common import core_step
from torch.profiler import ProfilerActivity, profile

step = core_step(compiled=False)
for _ in range(3):
    step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(10):
        step()
matmuls = ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm")
rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key in matmuls]
rows.sort(key=lambda e: -e.self_cpu_time_total)
for e in rows:
    print(
        f"{e.self_cpu_time_total / 10 / 1000:7.3f} ms/step {e.count // 10:4d}/step "
        f"{e.self_cpu_time_total / e.count:7.1f} us {e.key} {str(e.input_shapes)[:90]}"
    )
print(f"total {sum(e.self_cpu_time_total for e in rows) / 10 / 1000:.2f} ms/step")
