"""F.layer_norm against a two-pass layer norm written in plain ops, in the compiled core step.

The profile of stop 39 put about 17 ms of the compiled float32 step (AVX2) in inductor's
fused layer-norm / activation kernels. inductor lowers F.layer_norm to a Welford
reduction; the variant computes the mean, then the mean square of the centred input (two
plain sums, no per-element division), and lets autograd derive the backward. Both
variants compile their own copy of the step's entry function; before each timed call
``networks.F`` resolves ``layer_norm`` to that variant's function.
Usage: ``OMP_NUM_THREADS=1 python ab_two_pass_layer_norm.py [ROUNDS]``.
"""

import pathlib
import sys
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/
from common import patched_variants_ab
from timing_environment import machine

from drive_rllib.core import networks


def two_pass_layer_norm(x, normalized_shape, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.square().mean(-1, keepdim=True) + eps)


x = torch.randn(7, 256, 200)
assert torch.allclose(
    two_pass_layer_norm(x, x.shape[-1:]), F.layer_norm(x, x.shape[-1:]), atol=1e-5
)
functional = {name: getattr(F, name) for name in dir(F) if not name.startswith("_")}
variants = {
    "F.layer_norm": types.SimpleNamespace(**functional),
    "two_pass": types.SimpleNamespace(**{**functional, "layer_norm": two_pass_layer_norm}),
}


def use(name):
    networks.F = variants[name]


print(machine())
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
patched_variants_ab(variants, use, rounds, base="F.layer_norm", precision="float32")
