"""Where a bfloat16 matmul's fixed cost sits (one-off, stop 37): us per call, one thread.

    OMP_NUM_THREADS=1 python matmul_fixed_cost.py

A batched matmul over the ensemble's members against one matmul of the same FLOPs, and
oneDNN's prepacked linear (weights packed once) against a plain ``mm``.
"""

import time

import torch

torch.set_num_threads(1)


def us_per_call(fn, calls: int = 2000) -> float:
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


for members, rows, inner, outer in [
    (5, 52, 200, 200),
    (1, 260, 200, 200),
    (1, 52, 200, 200),
    (8, 32, 256, 256),
    (1, 256, 256, 256),
]:
    x = torch.randn(members, rows, inner).bfloat16()
    w = torch.randn(members, inner, outer).bfloat16()
    print(
        f"bmm [{members}, {rows}, {inner}] x [{members}, {inner}, {outer}]: "
        f"{us_per_call(lambda x=x, w=w: torch.bmm(x, w)):.1f} us"
    )

x = torch.randn(52, 200).bfloat16()
w = torch.randn(200, 200).bfloat16()  # a Linear's [out, in] weight
b = torch.zeros(200).bfloat16()
packed = torch.ops.mkldnn._reorder_linear_weight(w, 52)
print(f"mm [52, 200] x [200, 200]: {us_per_call(lambda: torch.mm(x, w.t())):.1f} us")
print(
    "oneDNN prepacked linear, the same product: "
    f"{us_per_call(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, b, 'none', [], '')):.1f} us"
)
