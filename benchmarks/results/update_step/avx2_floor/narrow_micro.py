"""Batched float32 matmuls of the core step's shapes, four ways, us per call, one thread.

``bmm``: torch.bmm(x, W) as `networks.ensemble_mlp` calls it; ``x, Wt^T``: W stored
transposed; ``(Wt x^T)^T``: the transposed product; ``loop mm``: one mm per member.
Usage: ``OMP_NUM_THREADS=1 python narrow_micro.py``.
"""

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
from common import microseconds

torch.set_num_threads(1)


def ways(x, w):
    """The four ways of one product, each a callable."""
    wt = w.transpose(1, 2).contiguous()
    return {
        "bmm": lambda: torch.bmm(x, w),
        "x, Wt^T": lambda: torch.bmm(x, wt.transpose(1, 2)),
        "(Wt x^T)^T": lambda: torch.bmm(wt, x.transpose(1, 2)).transpose(1, 2),
        "loop mm": lambda: torch.stack([x[m] @ w[m] for m in range(x.shape[0])]),
    }


for members, rows, inner, out in [
    (5, 256, 256, 2),
    (5, 256, 256, 23),
    (5, 52, 200, 37),
    (7, 256, 200, 37),
    (5, 256, 256, 256),
    (5, 52, 200, 200),
]:
    calls = ways(torch.randn(members, rows, inner), torch.randn(members, inner, out))
    shape = f"[{members}, {rows}, {inner}] x [{members}, {inner}, {out}]"
    print(f"{shape:<30} " + "  ".join(f"{k} {microseconds(f, 200):7.0f}" for k, f in calls.items()))
