"""Narrow layers (fewer than 64 outputs) as bmm(W^T, x^T)^T, in the compiled core step.

MKL's batched matmul is slow when the output has few columns (psi's heads end in 2,
f_hat in 37): `narrow_micro.py`. This times the compiled float32 core step with
`networks.ensemble_mlp` as it is ("base") and with those layers computed transposed
("narrow"; the same products), interleaved rounds of 10 steps, one process.
Usage: ``OMP_NUM_THREADS=1 python ab_narrow_output.py [ROUNDS]``.
"""

import pathlib
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
from common import compiled_variant, interleaved_rounds

from drive_rllib.core import networks
from drive_rllib.core.networks import ACTIVATIONS
from drive_rllib.core.spec import Activation


def narrow_mlp(x, params, activation=Activation.RELU, layer_norm=False):
    """`networks.ensemble_mlp` with its narrow layers transposed."""
    if x.dim() == 2:
        x = x.expand(params[0][0].shape[0], *x.shape)
    act = ACTIVATIONS[activation]
    last = len(params) - 1
    for index, (weight, bias) in enumerate(params):
        if layer_norm and index > 0:
            x = F.layer_norm(x, x.shape[-1:])
        if weight.shape[-1] < 64:
            x = torch.bmm(weight.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)
        else:
            x = torch.bmm(x, weight)
        x = x + bias.to(x.dtype)
        if index < last:
            x = act(x)
    return x.float()


variants = {"base": networks.ensemble_mlp, "narrow": narrow_mlp}


def use(name):
    networks.ensemble_mlp = variants[name]


steps = {}
for name in variants:
    use(name)
    steps[name] = compiled_variant(name, "float32")
interleaved_rounds(steps, int(sys.argv[1]) if len(sys.argv) > 1 else 7, base="base", before=use)
