"""Milliseconds per full DRIVE update step vs a plain-torch SAC update, on one torch thread.

One DRIVE update step = model step + Eq. 6 + Eq. 4 (+ entropy floor): the
forward of ``update_terms``, one backward of the combined loss, one Adam step
per component and the Polyak update. The SAC reference does the same work for
SAC: twin 256x256 Q MLPs, a tanh-Gaussian 256x256 actor, learned temperature,
one backward, three Adam steps, Polyak. Both on HalfCheetah-sized inputs (obs
17, action 6), batch 256, random data (cost does not depend on the values).

    python benchmarks/update_step.py                 # the table of docs/performance.md
    python benchmarks/update_step.py --repeats 5 --steps 20 --profile
    python benchmarks/update_step.py --model-hiddens 200 200 200 200 --prewarm 1250 \
        --save-state /tmp/drive_core_state.pt --horizons 5 --samples 1       # headline sizes
    python benchmarks/update_step.py --model-hiddens 200 200 200 200 \
        --init-state /tmp/drive_core_state.pt --wins --rounds 7              # each win on/off
    python benchmarks/update_step.py --model-hiddens 200 200 200 200 --horizons 5 \
        --samples 1 --precision float32 bfloat16 [--compile]                 # mixed precision

``--precision P ...`` times every (H, N) at each `UpdateSpec.precision` in the same
rotation (bfloat16: mixed precision, see the spec); ``--compile`` times the step as the
Learner does under ``torch_compile_learner`` (``torch.compile`` of ``update_terms``,
inductor with its C++ wrapper; the warm-up pays the compilation).

``--wins`` times the H 5, N 1 step in the variants ``all`` (denormals
flushed, fused Adam), ``no_flush``, ``no_fused`` (torch's for-loop Adam on
CPU) and ``none``, interleaved (rotated order, one round = each variant once)
on the same networks and Adam state, and reports the median of the per-round
ratios to ``all`` and to the plain-torch SAC step. Denormals only show with
an Adam state that has them: ``--prewarm U`` runs U updates on fresh random
batches first (``--save-state`` keeps the networks and Adam moments for the
next run, ``--init-state`` loads them).

Prints a markdown table: median ms over repeats (each repeat the mean of
--steps steps after a warm-up), the ratio to SAC, and with --profile the
share of time in each part of the DRIVE step at H=5, N=1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import numpy as np
import torch
from timing_environment import machine, timing_environment, write_figures
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

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
from drive_rllib.core.update import inductor_options

OBS_DIM, ACTION_DIM = 17, 6


DEVICE = torch.device("cpu")  # --device


def random_batch(batch_size: int) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.randn(batch_size, OBS_DIM, device=DEVICE),
        "action": torch.rand(batch_size, ACTION_DIM, device=DEVICE) * 2 - 1,
        "reward": torch.randn(batch_size, device=DEVICE),
        "next_obs": torch.randn(batch_size, OBS_DIM, device=DEVICE),
        "terminated": torch.zeros(batch_size, device=DEVICE),
    }


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


LEARNING_RATES = {
    "model": 1e-3,
    "posterior": 3e-4,
    "prior": 3e-4,
    "value": 3e-4,
    "entropy_floor": 3e-4,
}  # DRIVEConfig's defaults


def drive_step_fn(
    horizon: int,
    num_samples: int,
    batch_size: int,
    ensemble_size: int,
    model_hiddens: tuple[int, ...] = (200, 200, 200),
    fused: bool = True,
    state: dict | None = None,
    fresh_batches: bool = False,
    precision: str = "float32",
    compiled: bool = False,
):
    """One DRIVE update step (forward, backward, an Adam per component, Polyak) as a closure.

    ``state`` (from ``save_state``) sets the networks and Adam moments; ``fresh_batches``
    draws a new random batch (and merges it into the normaliser) every step;
    ``precision`` is `UpdateSpec.precision`; ``compiled`` runs ``update_terms`` through
    ``torch.compile`` (inductor, `inductor_options`) as ``torch_compile_learner`` does.
    """
    network_spec = NetworkSpec(
        ensemble_size=ensemble_size, num_elites=5, model_hiddens=model_hiddens
    )
    update_spec = UpdateSpec(
        horizon=horizon, num_samples=num_samples, gamma=0.99, alpha=1.0, precision=precision
    )
    terms_fn = (
        torch.compile(update_terms, options=inductor_options(DEVICE)) if compiled else update_terms
    )
    nets = DRIVENetworks(OBS_DIM, ACTION_DIM, network_spec).to(DEVICE)
    optimizers = {
        name: torch.optim.Adam(p, lr=LEARNING_RATES[name], fused=fused)
        for name, p in nets.parameter_groups().items()
    }
    weights = loss_weights(update_spec, network_spec)
    batch = random_batch(batch_size)
    nets.obs_normalizer.update(batch["obs"])
    if state is not None:
        nets.load_state_dict(state["nets"])  # load_state_dict copies onto DEVICE
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            for group in opt.param_groups:
                group["fused"], group["foreach"] = fused, None if not fused else False

    def step() -> None:
        nonlocal batch
        if fresh_batches:
            batch = random_batch(batch_size)
            nets.obs_normalizer.update(batch["obs"])
        terms, _ = terms_fn(nets, batch, update_spec)
        loss = combine_terms(terms, weights)
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers.values():
            opt.step()
        nets.polyak_update(0.005)

    step.nets, step.optimizers = nets, optimizers
    return step


def save_state(step, path: str, updates: int) -> None:
    torch.save(
        {
            "nets": step.nets.state_dict(),
            "updates": updates,
            "optimizers": {n: o.state_dict() for n, o in step.optimizers.items()},
        },
        path,
    )


def count_subnormals(optimizers: dict) -> int:
    return sum(
        int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())
        for opt in optimizers.values()
        for s in opt.state.values()
        for t in (s["exp_avg"], s["exp_avg_sq"])
    )


WIN_VARIANTS = {
    "all": (True, True),
    "no_flush": (False, True),
    "no_fused": (True, False),
    "none": (False, False),
}  # (flush denormals, fused Adam)


def compare_wins(args, state: dict | None) -> None:
    """The H=5, N=1 step with each cheap win on/off, interleaved; ratios per round."""
    hiddens = tuple(args.model_hiddens)
    sac = sac_step_fn(args.batch)
    steps = {
        name: drive_step_fn(5, 1, args.batch, args.ensemble, hiddens, fused=fused, state=state)
        for name, (_, fused) in WIN_VARIANTS.items()
    }
    names = [*WIN_VARIANTS, "sac"]
    times = {name: [] for name in names}
    adam = {name: [] for name in WIN_VARIANTS}  # the optimizer steps alone
    for round_index in range(args.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            flush = WIN_VARIANTS[name][0] if name in WIN_VARIANTS else False
            torch.set_flush_denormal(flush)
            times[name].append(
                time_ms(sac if name == "sac" else steps[name], 1, args.steps, warmup=1)
            )
            if name != "sac":  # the last step's gradients are still in .grad
                optimizers = steps[name].optimizers.values()
                adam[name].append(time_ms(lambda opts=optimizers: [o.step() for o in opts], 1, 10))
    torch.set_flush_denormal(False)
    print(
        f"core step, H 5, N 1, batch {args.batch}, E {args.ensemble} of "
        f"{'x'.join(map(str, hiddens))}, {args.rounds} rounds x {args.steps} steps, "
        f"loadavg {os.getloadavg()[0]:.2f}; subnormals in Adam's moments at the start: "
        f"{'n/a' if state is None else state.get('subnormals')}"
    )
    print(
        "\n| variant | ms per step (median) | x all | x plain SAC | Adam steps alone, ms | "
        "x all |\n|---|---|---|---|---|---|"
    )
    for name in names:
        vs_all = statistics.median(a / b for a, b in zip(times[name], times["all"]))
        vs_sac = statistics.median(a / b for a, b in zip(times[name], times["sac"]))
        label = "plain-torch SAC" if name == "sac" else name
        line = f"| {label} | {statistics.median(times[name]):.1f} | {vs_all:.2f} | {vs_sac:.2f} |"
        if name in adam:
            adam_vs_all = statistics.median(a / b for a, b in zip(adam[name], adam["all"]))
            line += f" {statistics.median(adam[name]):.2f} | {adam_vs_all:.2f} |"
        else:
            line += " | |"
        print(line)
    if args.json:
        write_figures(args.json, {"times": times, "adam": adam, "args": vars(args)})


def sac_step_fn(batch_size: int):
    """A plain-torch SAC update (Haarnoja et al. 2018, with auto temperature)."""
    q1, q2 = (mlp(OBS_DIM + ACTION_DIM, (256, 256), 1).to(DEVICE) for _ in range(2))
    q1_target, q2_target = (mlp(OBS_DIM + ACTION_DIM, (256, 256), 1).to(DEVICE) for _ in range(2))
    q1_target.load_state_dict(q1.state_dict())
    q2_target.load_state_dict(q2.state_dict())
    actor = TanhGaussianPolicy(OBS_DIM, ACTION_DIM).to(DEVICE)
    log_alpha = nn.Parameter(torch.zeros((), device=DEVICE))
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
        synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        samples.append((time.perf_counter() - start) * 1000 / steps)
    return statistics.median(samples)


#: The named steps of ``update_terms`` that ``phase_times`` and ``phase_flops`` measure.
PHASES = (
    "model_fit",
    "imagination",
    "posterior_step",
    "entropy_floor_step",
    "value_step",
    "update_diagnostics",
)


@contextlib.contextmanager
def wrapped_phases(wrap):
    """Replaces every function of ``PHASES`` in ``drive_rllib.core.update`` by
    ``wrap(name, fn)`` while the block runs (the core itself is unchanged); yields the module."""
    from drive_rllib.core import update as core_update

    originals = {name: getattr(core_update, name) for name in PHASES}
    for name, fn in originals.items():
        setattr(core_update, name, wrap(name, fn))
    try:
        yield core_update
    finally:
        for name, fn in originals.items():
            setattr(core_update, name, fn)


def phase_times(args, hiddens, state) -> dict[str, float]:
    """Wall ms per named step of ``update_terms`` (``PHASES``), the backward and the
    optimizer steps, at H=5, N=1."""
    spent: dict[str, list[float]] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            spent.setdefault(name, []).append((time.perf_counter() - start) * 1000)
            return out

        return wrapper

    with wrapped_phases(timed) as core_update:
        step = drive_step_fn(5, 1, args.batch, args.ensemble, hiddens, state=state)
        nets, optimizers = step.nets, step.optimizers
        network_spec = NetworkSpec(ensemble_size=args.ensemble, num_elites=5, model_hiddens=hiddens)
        update_spec = UpdateSpec(horizon=5, num_samples=1)
        weights = loss_weights(update_spec, network_spec)
        batch = random_batch(args.batch)
        for i in range(args.steps + 2):
            terms, _ = core_update.update_terms(nets, batch, update_spec)
            loss = combine_terms(terms, weights)
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss.backward()
            spent.setdefault("backward", []).append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            for opt in optimizers.values():
                opt.step()
            spent.setdefault("optimizer steps", []).append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values[2:]) for name, values in spent.items()}


def step_flops(step) -> int:
    """FLOPs of one call of ``step`` (after one uncounted call)."""
    step()
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def phase_flops(args, hiddens, state) -> dict[str, int]:
    """FLOPs of each named step of ``update_terms`` (``PHASES``, forward) and of the
    backward, at H=5, N=1 (as ``phase_times``, counted instead of timed)."""
    counted: dict[str, int] = {}

    def counting(name, fn):
        def wrapper(*a, **k):
            with FlopCounterMode(display=False) as counter:
                out = fn(*a, **k)
            counted[name] = counted.get(name, 0) + counter.get_total_flops()
            return out

        return wrapper

    with wrapped_phases(counting) as core_update:
        step = drive_step_fn(5, 1, args.batch, args.ensemble, hiddens, state=state)
        network_spec = NetworkSpec(ensemble_size=args.ensemble, num_elites=5, model_hiddens=hiddens)
        update_spec = UpdateSpec(horizon=5, num_samples=1)
        terms, _ = core_update.update_terms(step.nets, random_batch(args.batch), update_spec)
        loss = combine_terms(terms, loss_weights(update_spec, network_spec))
        with FlopCounterMode(display=False) as counter:
            loss.backward()
        counted["backward"] = counter.get_total_flops()
    return counted


def profile_parts(
    batch_size: int, ensemble_size: int, steps: int, hiddens: tuple[int, ...] = (200, 200, 200)
) -> dict[str, float]:
    """Share of the H=5, N=1 step per part, from torch.profiler record_function ranges."""
    from torch.profiler import ProfilerActivity, profile

    step = drive_step_fn(5, 1, batch_size, ensemble_size, hiddens)
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
    return table, self_time_shares(prof.key_averages(), steps)


#: Self-time categories of ``self_time_shares`` (aten op names).
OP_CATEGORIES = {
    "matmuls": ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm"),
    "layer norms": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "activations": (
        "aten::silu",
        "aten::silu_backward",
        "aten::clamp_min",
        "aten::relu",
        "aten::threshold_backward",
    ),
}


def self_time_shares(events, steps: int) -> dict[str, float]:
    """Share of the profiled self time per ``OP_CATEGORIES`` entry (the rest: "other"), and
    the aten calls per step (nested calls included)."""
    total = sum(event.self_cpu_time_total for event in events)
    shares = {
        name: sum(e.self_cpu_time_total for e in events if e.key in ops) / total
        for name, ops in OP_CATEGORIES.items()
    }
    shares["other"] = 1.0 - sum(shares.values())
    shares["aten calls per step"] = (
        sum(e.count for e in events if e.key.startswith("aten::")) / steps
    )
    return shares


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
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--model-hiddens", type=int, nargs="+", default=[200, 200, 200])
    parser.add_argument(
        "--prewarm", type=int, default=0, help="update steps on fresh random batches before timing"
    )
    parser.add_argument("--save-state", help="after --prewarm: save networks + Adam state")
    parser.add_argument("--init-state", help="start from a state --save-state wrote")
    parser.add_argument("--wins", action="store_true", help="each cheap win on/off (H 5, N 1)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="wall ms of each named step of update_terms at H=5, N=1",
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="floating-point operations per step (torch's FlopCounterMode: matmuls, the "
        "bulk of the work) for every configuration and SAC, and per phase at H=5, N=1",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["float32"],
        choices=["float32", "bfloat16"],
        help="UpdateSpec.precision of the DRIVE steps (several: each in the same rotation)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the steps (inductor, inductor_options: cpp_wrapper on a CPU)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    hiddens = tuple(args.model_hiddens)

    state = None
    if args.init_state:
        state = torch.load(args.init_state, map_location="cpu", weights_only=False)
    if args.prewarm:
        torch.set_flush_denormal(False)  # as a Learner with flush_denormals=False runs
        warm = drive_step_fn(
            5, 1, args.batch, args.ensemble, hiddens, fused=False, state=state, fresh_batches=True
        )
        for _ in range(args.prewarm):
            warm()
        updates = args.prewarm + (state["updates"] if state else 0)
        subnormals = count_subnormals(warm.optimizers)
        print(f"prewarm: {updates} updates, {subnormals} subnormal floats in Adam's moments")
        if args.save_state:
            save_state(warm, args.save_state, updates)
        state = (
            torch.load(args.save_state, map_location="cpu", weights_only=False)
            if args.save_state
            else None
        )
        if state is not None:
            state["subnormals"] = subnormals
    if state is not None and "subnormals" not in state:
        warm = drive_step_fn(5, 1, args.batch, args.ensemble, hiddens, state=state)
        state["subnormals"] = count_subnormals(warm.optimizers)
    if args.wins:
        compare_wins(args, state)
        return

    # Denormals flushed as the Learner does by default (flush_denormals=True).
    torch.set_flush_denormal(True)
    configs = [(h, n, p) for p in args.precision for n in args.samples for h in args.horizons]
    steps = {"sac": sac_step_fn(args.batch)}
    if args.compile:
        torch._dynamo.config.cache_size_limit = max(64, 2 * len(configs))
    for horizon, num_samples, precision in configs:
        steps[(horizon, num_samples, precision)] = drive_step_fn(
            horizon,
            num_samples,
            args.batch,
            args.ensemble,
            hiddens,
            state=state,
            precision=precision,
            compiled=args.compile,
        )
        if args.compile:  # compile outside the timed rounds
            for _ in range(2):
                steps[(horizon, num_samples, precision)]()
    # Interleaved: every round times every configuration once (rotated order).
    times = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(args.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_ms(steps[name], 1, args.steps, warmup=1))
    sac_ms = statistics.median(times["sac"])
    rows = []
    for horizon, num_samples, precision in configs:
        series = times[(horizon, num_samples, precision)]
        rows.append(
            {
                "H": horizon,
                "N": num_samples,
                "precision": precision,
                "compiled": args.compile,
                "ms": statistics.median(series),
                "ratio_to_sac": statistics.median(a / b for a, b in zip(series, times["sac"])),
            }
        )

    print(
        f"device {DEVICE}, batch {args.batch}, E={args.ensemble} of "
        f"{'x'.join(map(str, hiddens))}, obs {OBS_DIM}, action {ACTION_DIM}, "
        f"1 torch thread, fused Adam, denormals flushed, median of {args.repeats} "
        f"interleaved rounds x {args.steps} steps, "
        f"{f'compiled (inductor, {inductor_options(DEVICE)})' if args.compile else 'eager'}, "
        f"loadavg {os.getloadavg()[0]:.2f}"
    )
    print(f"\nplain-torch SAC update: {sac_ms:.1f} ms\n")
    print("| H | N | precision | DRIVE ms/step | x SAC (median of per-round ratios) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['H']} | {row['N']} | {row['precision']} | {row['ms']:.1f} | "
            f"{row['ratio_to_sac']:.2f} |"
        )
    slopes = {}
    for precision in args.precision:
        for name, key, fixed, value in (
            ("ms per horizon step (N=1)", "H", "N", 1),
            ("ms per sample (H=5)", "N", "H", 5),
        ):
            points = [
                (r[key], r["ms"]) for r in rows if r[fixed] == value and r["precision"] == precision
            ]
            if len(points) >= 2:
                x, y = np.array(points, dtype=float).T
                slope, intercept = np.polyfit(x, y, 1)
                slopes[f"{name}, {precision}"] = {"slope": slope, "intercept": intercept}
                print(
                    f"\n{name}, {precision}: {slope:.2f} (least squares over {key} = "
                    f"{', '.join(str(int(v)) for v in x)}; intercept {intercept:.1f} ms)"
                )
    if args.flops:
        counts = {name: step_flops(step) for name, step in steps.items()}
        print(
            "\n| step | GFLOP per step | x SAC's FLOPs | x SAC's ms | achieved GFLOP/s |"
            "\n|---|---|---|---|---|"
        )
        sac_gflop = counts["sac"] / 1e9
        print(f"| SAC | {sac_gflop:.3f} | 1 | 1 | {sac_gflop / sac_ms * 1e3:.1f} |")
        for row in rows:
            gflop = counts[(row["H"], row["N"], row["precision"])] / 1e9
            row["gflop"] = gflop
            print(
                f"| DRIVE H {row['H']} N {row['N']} {row['precision']} | {gflop:.2f} | "
                f"{gflop / sac_gflop:.1f} | "
                f"{row['ratio_to_sac']:.1f} | {gflop / row['ms'] * 1e3:.1f} |"
            )
        print("\nDRIVE H=5 N=1, GFLOP per step by phase:")
        for phase, flops in phase_flops(args, hiddens, state).items():
            print(f"  {phase:28s} {flops / 1e9:7.3f}")
    if args.phases:
        print("\nDRIVE H=5 N=1, ms per step by phase (wall, median over steps):")
        for phase, ms in phase_times(args, hiddens, state).items():
            print(f"  {phase:28s} {ms:7.2f}")
    if args.profile:
        parts, shares = profile_parts(args.batch, args.ensemble, args.steps, hiddens)
        print("\nDRIVE H=5 N=1, ms per step by op (self+children, overlapping):")
        for key, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {key:32s} {ms:7.2f}")
        print("\nDRIVE H=5 N=1, share of the profiled self time:")
        for key, share in shares.items():
            print(f"  {key:32s} " + (f"{share:7.0f}" if key.endswith("step") else f"{share:7.1%}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "sac_ms": sac_ms,
                    "rows": rows,
                    "times": {
                        "sac" if name == "sac" else "H{}_N{}_{}".format(*name): series
                        for name, series in times.items()
                    },
                    "slopes": slopes,
                    "batch": args.batch,
                    "ensemble": args.ensemble,
                    "loadavg": os.getloadavg(),
                    "environment": timing_environment(),
                    "machine": machine(),
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
