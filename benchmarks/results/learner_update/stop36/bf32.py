"""The compiled core step (the issue's sizes, one thread) two ways in one process, 7
interleaved rounds of 10 steps: float32 networks whose matmuls oneDNN computes in bfloat16
(``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``: bfloat16 inputs, float32
accumulation and outputs, no casts in the fused kernels) against bfloat16 autocast (the
project's ``precision="bfloat16"``).

    OMP_NUM_THREADS=1 python bf32.py > bf32.txt
"""

import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(
    0, str(pathlib.Path(__file__).resolve().parents[2] / "update_step/kernels_2026-12-06")
)
from common import core_step

matmul = torch.backends.mkldnn.matmul
setting = {"bf32": "bf16", "autocast_bf16": "none"}
steps = {}
for name, precision in (("bf32", "float32"), ("autocast_bf16", "bfloat16")):
    matmul.fp32_precision = setting[name]
    steps[name] = core_step(compiled=True, precision=precision)
for name, step in steps.items():
    matmul.fp32_precision = setting[name]
    began = time.time()
    for _ in range(3):
        step()
    print(f"{name}: compile {time.time() - began:.1f} s", flush=True)
times = {name: [] for name in steps}
for round_ in range(7):
    for name in list(steps) if round_ % 2 else list(steps)[::-1]:
        matmul.fp32_precision = setting[name]
        began = time.perf_counter()
        for _ in range(10):
            steps[name]()
        times[name].append((time.perf_counter() - began) * 100)
for name, values in times.items():
    print(f"{name}: {statistics.median(values):.2f} ms/step {[round(v, 1) for v in values]}")
ratios = [a / b for a, b in zip(times["bf32"], times["autocast_bf16"])]
print(f"bf32 / autocast_bf16, median per round: {statistics.median(ratios):.3f}")
