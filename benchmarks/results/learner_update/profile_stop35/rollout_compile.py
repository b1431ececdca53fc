"""A distribution rollout (the headline file's sizes: 256 start states, 20 model steps, an 8 x
3x256 layer-normed SiLU ensemble, bfloat16) eager against inductor-compiled, ms per
rollout, 7 interleaved rounds of 5, one torch thread; and the compile's time. The rollout
is written here with fixed shapes (every state and an alive flag; the selection after
it), as it would have to be to trace as one graph.

    OMP_NUM_THREADS=1 python rollout_compile.py > rollout_compile.txt
"""

import statistics
import time

import torch
from common import file_networks

from drive_rllib.core.distributions import tanh_gaussian_action
from drive_rllib.core.imagine import ensemble_step
from drive_rllib.core.networks import autocast_weights
from drive_rllib.core.spec import UpdateSpec
from drive_rllib.core.update import inductor_options, mixed_precision


@torch.no_grad()
def rollout(nets, start, spec):
    with mixed_precision(start.device, spec.precision):
        normalize = nets.obs_normalizer.frozen(start.dtype)
        model = nets.model
        params = autocast_weights(model.layer_params(model.elite_idx, frozen=True))
        affine = nets.target_affine(start.dtype)
        obs, alive = start, torch.ones(start.shape[0], dtype=torch.bool)
        states, alives = [obs], [alive]
        for _ in range(spec.distribution_rollout_horizon):
            action = tanh_gaussian_action(*nets.prior(normalize(obs)))
            obs, _, cont = ensemble_step(model, params, normalize, obs, action, None, affine)
            alive = alive & (cont > 0.5) & torch.isfinite(obs).all(-1)
            states.append(obs)
            alives.append(alive)
        return torch.stack(states), torch.stack(alives)


def main() -> None:
    nets = file_networks()
    spec = UpdateSpec(distribution_rollout_horizon=20, precision="bfloat16")
    nets.obs_normalizer.update(torch.randn(1000, 17))
    start = torch.randn(256, 17)
    compiled = torch.compile(rollout, options=inductor_options(torch.device("cpu")))
    began = time.perf_counter()
    compiled(nets, start, spec)
    print(f"compile {time.perf_counter() - began:.1f} s")
    times = {"eager": [], "compiled": []}
    for round_ in range(7):
        order = [("eager", rollout), ("compiled", compiled)]
        for name, fn in order if round_ % 2 else order[::-1]:
            began = time.perf_counter()
            for _ in range(5):
                fn(nets, start, spec)
            times[name].append((time.perf_counter() - began) / 5 * 1e3)
    for name, values in times.items():
        rounded = [round(v, 1) for v in values]
        print(f"{name} {statistics.median(values):.1f} ms per rollout {rounded}")


if __name__ == "__main__":
    main()
