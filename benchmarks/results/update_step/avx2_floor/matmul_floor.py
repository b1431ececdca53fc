"""The core step's matmuls alone: FLOPs by shape, and each shape timed by itself.

Counts every ``mm`` / ``addmm`` / ``bmm`` of one eager float32 core step at the issue's
headline sizes (E 7 (5 elites) of 4x200, 256x256 nets, B 256, H 5, N 1; the compiled
step makes the same calls), then times each shape alone (fresh operands, warm) and
sums count x time: a floor for the step on this CPU, since no change that keeps the
arithmetic can take the matmuls below it. A square 1024 float32 matmul gives the
CPU's best sustained rate for comparison.
Usage: ``OMP_NUM_THREADS=1 python matmul_floor.py``.
"""

import collections
import pathlib
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/
from common import core_step, microseconds
from timing_environment import machine

MATMULS = {"aten.mm", "aten.addmm", "aten.bmm"}


class CountMatmuls(TorchDispatchMode):
    """Calls per (op, operand shapes), with the FLOPs of each call."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()
        self.flops = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in MATMULS:
            a, b = args[1:3] if name == "aten.addmm" else args[:2]
            key = (name, tuple(a.shape), tuple(b.shape))
            self.calls[key] += 1
            self.flops[key] = 2 * a.numel() * b.shape[-1]
        return func(*args, **(kwargs or {}))


def alone(name, a_shape, b_shape):
    a, b = torch.randn(a_shape), torch.randn(b_shape)
    if name == "aten.addmm":
        bias = torch.randn(b_shape[-1])
        return lambda: torch.addmm(bias, a, b)
    return (lambda: torch.mm(a, b)) if name == "aten.mm" else (lambda: torch.bmm(a, b))


torch.set_num_threads(1)
print(machine())
step = core_step(compiled=False, precision="float32")
step()
counter = CountMatmuls()
with counter:
    step()
total_flops = sum(counter.calls[k] * counter.flops[k] for k in counter.calls)
floor = 0.0
rows = []
for key, count in counter.calls.most_common():
    seconds = microseconds(alone(*key), max(20, 2000 // count), warmup=10) / 1e6
    floor += count * seconds
    rows.append((count * seconds, key, count, seconds))
print(f"{sum(counter.calls.values())} matmul calls, {total_flops / 1e9:.3f} GFLOP per core step")
print(
    f"each shape alone, count x time: {floor * 1e3:.1f} ms ({total_flops / floor / 1e9:.1f} GFLOP/s)"
)
for total, key, count, seconds in sorted(rows, reverse=True)[:12]:
    gflops = counter.flops[key] / seconds / 1e9
    print(
        f"  {total * 1e3:6.2f} ms  {count:3d} x {seconds * 1e6:6.1f} us ({gflops:5.1f} GFLOP/s)  {key}"
    )
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
seconds = microseconds(lambda: a @ b, 20, warmup=10) / 1e6
print(f"[1024, 1024] x [1024, 1024] alone: {2 * 1024**3 / seconds / 1e9:.1f} GFLOP/s")
print(f"the step's FLOPs at that rate: {total_flops / (2 * 1024**3 / seconds) * 1e3:.1f} ms")
