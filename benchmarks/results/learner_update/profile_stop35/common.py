"""Shared by the one-off scripts here: the headline file's networks
(`tuned_examples/drive_halfcheetah.yaml`: an 8 x 3x256 layer-normed SiLU ensemble on
standardised targets, no termination head, five value heads) for HalfCheetah-v5's sizes,
on one torch thread with denormals flushed, as the Learner runs."""

import torch

from drive_rllib.core import DRIVENetworks, NetworkSpec

OBS_DIM, ACTION_DIM = 17, 6


def file_networks() -> DRIVENetworks:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    spec = NetworkSpec(
        ensemble_size=8,
        num_elites=8,
        model_hiddens=(256, 256, 256),
        model_layer_norm=True,
        model_activation="silu",
        model_normalize_targets=True,
        value_heads=5,
        learn_termination=False,
    )
    return DRIVENetworks(OBS_DIM, ACTION_DIM, spec)
