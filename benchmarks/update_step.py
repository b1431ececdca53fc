"""Milliseconds per full DRIVE update step vs a plain-torch SAC update, on one torch thread.

One DRIVE update step = model step + Eq. 6 + Eq. 4 (+ entropy floor): the
forward of ``update_terms``, one backward of the combined loss, one Adam step
per component and the Polyak update. The SAC reference does the same work for
SAC: twin 256x256 Q MLPs, a tanh-Gaussian 256x256 actor, learned temperature,
one backward, three Adam steps, Polyak. Both on HalfCheetah-sized inputs (obs
17, action 6), batch 256, random data (cost does not depend on the values).

    python benchmarks/update_step.py                 # the README table
    python benchmarks/update_step.py --repeats 5 --steps 20 --profile

Prints a markdown table: median ms over repeats (each repeat the mean of
--steps steps after a warm-up), the ratio to SAC, and with --profile the
share of time in each part of the DRIVE step at H=5, N=1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

from drive_rllib.core import (
    DRIVENetworks,
    NetworkSpec,
    UpdateSpec,
    combine_terms,
    loss_weights,
    update_terms,
)
from drive_rllib.core.distributions import tanh_gaussian_rsample
from drive_rllib.core.networks import TanhGaussianPolicy, mlp

OBS_DIM, ACTION_DIM = 17, 6


def random_batch(batch_size: int) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.randn(batch_size, OBS_DIM),
        "action": torch.rand(batch_size, ACTION_DIM) * 2 - 1,
        "reward": torch.randn(batch_size),
        "next_obs": torch.randn(batch_size, OBS_DIM),
        "terminated": torch.zeros(batch_size),
    }


def drive_step_fn(horizon: int, num_samples: int, batch_size: int, ensemble_size: int):
    network_spec = NetworkSpec(ensemble_size=ensemble_size, num_elites=5)
    update_spec = UpdateSpec(horizon=horizon, num_samples=num_samples, gamma=0.99, alpha=1.0)
    nets = DRIVENetworks(OBS_DIM, ACTION_DIM, network_spec)
    optimizers = [
        torch.optim.Adam(p, lr=3e-4, fused=True) for p in nets.parameter_groups().values()
    ]
    weights = loss_weights(update_spec, network_spec)
    batch = random_batch(batch_size)
    nets.obs_normalizer.update(batch["obs"])

    def step() -> None:
        terms, _ = update_terms(nets, batch, update_spec)
        loss = combine_terms(terms, weights)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        nets.polyak_update(0.005)

    return step


def sac_step_fn(batch_size: int):
    """A plain-torch SAC update (Haarnoja et al. 2018, with auto temperature)."""
    q1, q2 = (mlp(OBS_DIM + ACTION_DIM, (256, 256), 1) for _ in range(2))
    q1_target, q2_target = (mlp(OBS_DIM + ACTION_DIM, (256, 256), 1) for _ in range(2))
    q1_target.load_state_dict(q1.state_dict())
    q2_target.load_state_dict(q2.state_dict())
    actor = TanhGaussianPolicy(OBS_DIM, ACTION_DIM)
    log_alpha = nn.Parameter(torch.zeros(()))
    critic_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4, fused=True)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4, fused=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=3e-4, fused=True)
    batch = random_batch(batch_size)
    gamma, tau, target_entropy = 0.99, 0.005, -float(ACTION_DIM)

    def q(net: nn.Module, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([obs, action], -1)).squeeze(-1)

    def step() -> None:
        obs, action, next_obs = batch["obs"], batch["action"], batch["next_obs"]
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = tanh_gaussian_rsample(*actor(next_obs))
            next_q = torch.min(
                q(q1_target, next_obs, next_action), q(q2_target, next_obs, next_action)
            )
            target = batch["reward"] + gamma * (1 - batch["terminated"]) * (
                next_q - alpha * next_log_prob
            )
        critic_loss = 0.5 * (
            (q(q1, obs, action) - target).square().mean()
            + (q(q2, obs, action) - target).square().mean()
        )
        new_action, log_prob = tanh_gaussian_rsample(*actor(obs))
        # The actor's Q evaluation must not train the critics: frozen params via detached copies.
        q_new = torch.min(
            torch.func.functional_call(
                q1,
                {k: p.detach() for k, p in q1.named_parameters()},
                (torch.cat([obs, new_action], -1),),
            ),
            torch.func.functional_call(
                q2,
                {k: p.detach() for k, p in q2.named_parameters()},
                (torch.cat([obs, new_action], -1),),
            ),
        ).squeeze(-1)
        actor_loss = (alpha * log_prob - q_new).mean()
        alpha_loss = -(log_alpha * (log_prob.detach() + target_entropy)).mean()
        for opt in (critic_opt, actor_opt, alpha_opt):
            opt.zero_grad(set_to_none=True)
        (critic_loss + actor_loss + alpha_loss).backward()
        for opt in (critic_opt, actor_opt, alpha_opt):
            opt.step()
        with torch.no_grad():
            for target_net, net in ((q1_target, q1), (q2_target, q2)):
                for tp, p in zip(target_net.parameters(), net.parameters()):
                    tp.lerp_(p, tau)

    return step


def time_ms(step, repeats: int, steps: int, warmup: int = 3) -> float:
    """Median over repeats of the mean milliseconds per step."""
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        samples.append((time.perf_counter() - start) * 1000 / steps)
    return statistics.median(samples)


def profile_parts(batch_size: int, ensemble_size: int, steps: int) -> dict[str, float]:
    """Share of the H=5, N=1 step per part, from torch.profiler record_function ranges."""
    from torch.profiler import ProfilerActivity, profile

    step = drive_step_fn(5, 1, batch_size, ensemble_size)
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    table = {}
    for event in prof.key_averages():
        if event.key in (
            "aten::addmm",
            "aten::baddbmm",
            "aten::bmm",
            "aten::mm",
            "AddmmBackward0",
            "BaddbmmBackward0",
            "Optimizer.step#Adam.step",
            "aten::index",
            "IndexBackward0",
            "aten::cat",
        ):
            table[event.key] = event.cpu_time_total / 1000 / steps
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ensemble", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    sac_ms = time_ms(sac_step_fn(args.batch), args.repeats, args.steps)
    rows = []
    for num_samples in args.samples:
        for horizon in args.horizons:
            ms = time_ms(
                drive_step_fn(horizon, num_samples, args.batch, args.ensemble),
                args.repeats,
                args.steps,
            )
            rows.append({"H": horizon, "N": num_samples, "ms": ms, "ratio_to_sac": ms / sac_ms})

    print(
        f"batch {args.batch}, E={args.ensemble}, obs {OBS_DIM}, action {ACTION_DIM}, "
        f"1 torch thread, median of {args.repeats} x {args.steps} steps, "
        f"loadavg {os.getloadavg()[0]:.2f}"
    )
    print(f"\nplain-torch SAC update: {sac_ms:.1f} ms\n")
    print("| H | N | DRIVE ms/step | x SAC |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['H']} | {row['N']} | {row['ms']:.1f} | {row['ratio_to_sac']:.2f} |")
    if args.profile:
        print("\nDRIVE H=5 N=1, ms per step by op (self+children, overlapping):")
        for key, ms in sorted(
            profile_parts(args.batch, args.ensemble, args.steps).items(), key=lambda kv: -kv[1]
        ):
            print(f"  {key:32s} {ms:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "sac_ms": sac_ms,
                    "rows": rows,
                    "batch": args.batch,
                    "ensemble": args.ensemble,
                    "loadavg": os.getloadavg(),
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
