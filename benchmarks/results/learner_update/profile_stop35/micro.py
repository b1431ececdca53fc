"""Three micro-benchmarks at the headline file's sizes, one torch thread (ms or us per call):
the five fused Adam optimizers' steps against one fused Adam with the five parameter
groups; psi_bar's Polyak update as a loop of ``lerp_`` against one ``_foreach_lerp_``
(`DRIVENetworks.polyak_update`); `learner.all_finite` over every gradient, per-tensor
min/max (its CPU path) against one ``_foreach_norm`` (its accelerator path). Three
alternating repeats each.

    OMP_NUM_THREADS=1 python micro.py > micro.txt
"""

import time

import torch
from common import file_networks

from drive_rllib.algorithm.learner import all_finite


def timed(fn, calls: int) -> float:
    for _ in range(20):
        fn()
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - began) / calls


def main() -> None:
    nets = file_networks()
    groups = nets.parameter_groups()
    print({name: sum(p.numel() for p in params) for name, params in groups.items()})
    for p in nets.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    five = [torch.optim.Adam(params, lr=3e-4, fused=True) for params in groups.values()]
    one = torch.optim.Adam([{"params": params} for params in groups.values()], lr=3e-4, fused=True)

    def five_steps():
        for optimizer in five:
            optimizer.step()

    def loop_lerp():
        with torch.no_grad():
            for target, source in zip(nets.target_value.parameters(), nets.value.parameters()):
                target.lerp_(source, 0.005)

    grads = [p.grad for p in nets.parameters()]
    for _ in range(3):
        print(
            f"Adam: five optimizers {timed(five_steps, 300) * 1e3:.2f} ms, "
            f"one with five groups {timed(one.step, 300) * 1e3:.2f} ms"
        )
        print(
            f"Polyak: lerp_ per parameter {timed(loop_lerp, 2000) * 1e6:.0f} us, "
            f"_foreach_lerp_ {timed(lambda: nets.polyak_update(0.005), 2000) * 1e6:.0f} us"
        )
        print(
            f"all_finite over {len(grads)} gradients: min/max per tensor "
            f"{timed(lambda: all_finite(grads, foreach=False), 300) * 1e3:.2f} ms, "
            f"_foreach_norm {timed(lambda: all_finite(grads, foreach=True), 300) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
