"""The compiled core step (the issue's sizes, one thread) two ways in one process, 7
interleaved rounds of 10 steps: float32 networks whose matmuls oneDNN computes in bfloat16
(``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``: bfloat16 inputs, float32
accumulation and outputs, no casts in the fused kernels) against bfloat16 autocast (the
project's ``precision="bfloat16"``).

    OMP_NUM_THREADS=1 python bf32.py > bf32.txt
"""

import torch
from interleaved import compare, core_step

matmul = torch.backends.mkldnn.matmul
setting = {"bf32": "bf16", "autocast_bf16": "none"}
steps = {
    "bf32": core_step(compiled=True, precision="float32"),
    "autocast_bf16": core_step(compiled=True, precision="bfloat16"),
}


def use(name: str) -> None:
    matmul.fp32_precision = setting[name]


compare(steps, use, baseline="autocast_bf16")
