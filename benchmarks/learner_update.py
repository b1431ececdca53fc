"""DRIVE's update step through RLlib (``learner_group.update``) next to RLlib SAC's, interleaved.

One DRIVE update step here is what ``DRIVE.training_step`` runs: the replay
actor builds one C x B learner batch, ``learner_group.update(batch_refs=...,
minibatch_size=B)`` resolves it and runs C update steps (normaliser, forward,
one backward, the optimizers, Polyak, the periodic ensemble ranking, RLlib's
metrics); ms per update step = wall time / C. RLlib SAC's figure is the
peers' harness (``../shared/peers/rllib_sac.py update-time``): one
``learner_group.update(episodes=...)`` of B rows drawn from its filled buffer,
HalfCheetah-v5, as RLlib ships it (denormals not flushed). Both learners are
local (``num_learners=0``), in this process, on the same torch threads
(``--threads``, default 1), so the figures of one round see the same machine
load; variants run in a rotated order every round, and ratios are taken round
by round, then the median. ``--threads 1 2`` times every variant and RLlib SAC
at each thread count, all in the same rotation (columns ``NAME@THREADS``; each
ratio is to RLlib SAC at the same thread count).

    python benchmarks/learner_update.py --rounds 7                 # ratio to RLlib SAC
    python benchmarks/learner_update.py --rounds 7 --wins          # each cheap win on/off
    python benchmarks/learner_update.py --rounds 5 --recipe defaults   # DRIVEConfig's defaults
    python benchmarks/learner_update.py --rounds 5 --recipe file       # the headline file's settings
    python benchmarks/learner_update.py --rounds 7 --threads 1 2   # on 1 and on 2 threads

Sizes (``--recipe headline``, passed explicitly so that default changes do not
move them): E 7 (5 elites) of 4x200, 256x256 policy/posterior/value, B 256,
H 5, N 1; ``--recipe file`` takes every setting of
``tuned_examples/drive_halfcheetah.yaml`` (its update and warm-up schedule
replaced by the benchmark's). ``--prewarm`` updates run first (not timed), on random-action
HalfCheetah data, so that Adam's moments hold what a running Learner's do
(subnormals included); ``--state FILE`` saves that Learner state once and
reuses it. ``--init-state FILE`` starts instead from the networks and Adam
moments that ``update_step.py --prewarm U --save-state FILE`` wrote (the
same sizes; the quicker way on a loaded machine).

Variants (``--wins``), each toggled on the one live Learner:
``all`` (every win, the defaults), ``no_flush`` (denormals not flushed),
``no_fused`` (torch's default for-loop Adam), ``per_parameter`` (RLlib's own
``apply_gradients``), ``none`` (all three off). ``--fit-intervals K ...``
adds ``fit_every_K``: every win on, and f_hat fitted on every K-th update step
only (``model_fit_interval``; a learning setting, not a cost switch: default 1).
Use ``--updates`` divisible by every K, so that each round fits 1/K of its steps.
``--settings NAME=JSON ...`` adds a DRIVE algorithm of its own per NAME, built
with the same sizes plus those ``training`` settings (e.g. ``heads_2='{"value_heads":
2}'``: settings that change the networks cannot be toggled on one Learner),
prewarmed alike and timed in the same rotation with every win on. Keys that start
with ``torch_compile_`` go to ``config.framework`` instead (RLlib's torch.compile of
the Learner; the prewarm pays the compile):

    python benchmarks/learner_update.py --rounds 5 --updates 20 --prewarm 200 \
        --settings 'heads_2={"value_heads": 2}' 'heads_3={"value_heads": 3}'
    python benchmarks/learner_update.py --rounds 5 --updates 20 --prewarm 200 \
        --settings 'compiled={"torch_compile_learner": true}'

On a machine with a GPU, ``--num-gpus-per-learner 1`` puts both local Learners on it
(RLlib's ``num_gpus_per_learner``; the timers wait for the GPU's queued work), which is how
``benchmarks/gpu_check.sh`` takes the ratio there:

    python benchmarks/learner_update.py --num-gpus-per-learner 1 --rounds 5 --updates 20 \
        --prewarm 100 --settings 'compiled={"torch_compile_learner": true}'

Precision: the headline algorithm runs DRIVEConfig's default ``precision="auto"``
(bfloat16 on a CPU with AMX-BF16 or AVX512-BF16, float32 elsewhere); the first line
of the output says which. Time the two side by side with settings of their own:

    python benchmarks/learner_update.py --rounds 7 --updates 20 --prewarm 200 \
        --settings 'f32={"precision": "float32"}' 'bf16={"precision": "bfloat16"}' \
        'bf16_compiled={"precision": "bfloat16", "torch_compile_learner": true}'
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import pickle
import statistics
import sys
import time
from typing import Any

import torch
from timing_environment import machine, start_private_ray, timing_environment, write_figures

HEADLINE = {
    "ensemble_size": 7,
    "num_elites": 5,
    "model_hiddens": [200, 200, 200, 200],
    "policy_hiddens": [256, 256],
    "value_hiddens": [256, 256],
    "train_batch_size_per_learner": 256,
    "horizon": 5,
    "num_samples": 1,
}
#: Learner attributes / optimizer flags of each variant: (flush, fused, gradient_check).
VARIANTS = {
    "all": (True, True, "global"),
    "no_flush": (False, True, "global"),
    "no_fused": (True, False, "global"),
    "per_parameter": (True, True, "per_parameter"),
    "none": (False, False, "per_parameter"),
}
DEFAULT_PEERS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peers" / "rllib_sac.py"
HEADLINE_FILE = (
    pathlib.Path(__file__).resolve().parents[1] / "tuned_examples" / "drive_halfcheetah.yaml"
)


def file_settings(path: pathlib.Path) -> dict[str, Any]:
    """The DRIVEConfig settings of an experiment file's (first) experiment, env and seed excluded."""
    from drive_rllib.cli.experiments import file_config

    config = file_config(str(path))
    for key in ("env", "seed", "num_env_runners", "num_learners"):
        config.pop(key, None)
    return config


def drive_algo(
    env: str,
    recipe: str,
    updates: int,
    seed: int,
    extra: dict[str, Any] | None = None,
    gpus: float = 0,
) -> Any:
    from drive_rllib.algorithm import DRIVEConfig

    base = DRIVEConfig()
    if recipe == "file":
        base = base.update_from_dict(file_settings(HEADLINE_FILE))
    sizes = HEADLINE if recipe == "headline" else {}
    training = {**sizes, **(extra or {})}
    # RLlib's torch.compile settings are framework settings, not training ones.
    framework = {k: training.pop(k) for k in list(training) if k.startswith("torch_compile_")}
    config = (
        base.environment(env)
        .framework(**framework)
        .env_runners(num_env_runners=0)
        .learners(num_learners=0, num_gpus_per_learner=gpus)
        .debugging(seed=seed)
        .training(
            **training,
            updates_per_iteration=updates,
            env_steps_per_iteration=1000,
            num_warmup_steps=10**9,  # train() only collects (random actions)
        )
    )
    algo = config.build_algo()
    for _ in range(3):
        algo.train()
    return algo


def drive_update(algo: Any, updates: int) -> float:
    """Wall ms of one training_step's learner update of ``updates`` steps, per step."""
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    from drive_rllib.algorithm.batch import sample_learner_batch

    batch_size = algo.config.train_batch_size_per_learner
    start = time.perf_counter()
    ref = algo.replay_actor.__ray_call__.remote(sample_learner_batch, updates * batch_size)
    algo.learner_group.update(
        batch_refs=[ref],
        minibatch_size=batch_size,
        num_epochs=1,
        timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 3000},
    )
    synchronize()
    return (time.perf_counter() - start) * 1000 / updates


def synchronize() -> None:
    """Wait for the GPU's queued work (a Learner on cuda), so the wall time includes it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def batch_fetch_ms(algo: Any, rows: int) -> float:
    """Wall ms of building one C x B learner batch in the replay actor and ray.get of it."""
    import ray

    from drive_rllib.algorithm.batch import sample_learner_batch

    start = time.perf_counter()
    ray.get(algo.replay_actor.__ray_call__.remote(sample_learner_batch, rows))
    return (time.perf_counter() - start) * 1000


def apply_gradients_ms(learner: Any, repeats: int = 10) -> float:
    """Mean wall ms of the Learner's apply_gradients on the last update's gradients."""
    grads = {ref: param.grad for ref, param in learner._params.items() if param.grad is not None}
    start = time.perf_counter()
    for _ in range(repeats):
        learner.apply_gradients(grads)
    synchronize()
    return (time.perf_counter() - start) * 1000 / repeats


def set_variant(
    learner: Any, flush: bool, fused: bool, gradient_check: str, fit_interval: int = 1
) -> None:
    module = learner.module["default_policy"].unwrapped()
    update = dataclasses.replace(module.spec.update, model_fit_interval=fit_interval)
    module.spec = dataclasses.replace(module.spec, update=update)
    learner._flush_denormals = flush
    torch.set_flush_denormal(flush)
    learner._gradient_check = gradient_check
    for _, optimizer in learner.get_optimizers_for_module("default_policy"):
        for group in optimizer.param_groups:
            group["fused"] = fused
            group["foreach"] = None if not fused else False


def sac_algo(peers: pathlib.Path, env: str, batch: int, seed: int, gpus: float = 0) -> Any:
    spec = importlib.util.spec_from_file_location("rllib_sac_peer", peers)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = (
        module.make_config(env, "generic", seed)
        .training(
            train_batch_size_per_learner=batch, num_steps_sampled_before_learning_starts=10**9
        )
        .learners(num_learners=0, num_gpus_per_learner=gpus)
    )
    algo = config.build_algo()
    for _ in range(20):  # fill the buffer without learning (as the harness does)
        algo.train()
    return algo


def sac_update(algo: Any, batch: int, updates: int) -> float:
    """Mean wall ms of ``updates`` RLlib SAC learner updates (sampling not timed), as the harness."""
    buffer = algo.local_replay_buffer
    total = 0.0
    for _ in range(updates):
        episodes = buffer.sample(
            num_items=batch, n_step=1, gamma=0.99, beta=0.4, sample_episodes=True
        )
        start = time.perf_counter()
        algo.learner_group.update(episodes=episodes)
        synchronize()
        total += time.perf_counter() - start
    return total * 1000 / updates


def load_core_state(learner: Any, path: str) -> str:
    """Networks and Adam moments saved by ``update_step.py --save-state`` (same sizes)."""
    saved = torch.load(path, weights_only=False)
    module = learner.module["default_policy"].unwrapped()
    module.nets.load_state_dict(saved["nets"])
    for name, optimizer in learner.get_optimizers_for_module("default_policy"):
        optimizer.load_state_dict(saved["optimizers"][name])
    return f"core state of {saved['updates']} updates loaded from {path}"


def prewarm(algo: Any, updates: int, state_file: str | None) -> str:
    group = algo.learner_group
    if state_file and os.path.exists(state_file):
        with open(state_file, "rb") as f:
            group.set_state(pickle.load(f))
        return f"Learner state loaded from {state_file}"
    done = 0
    while done < updates:
        chunk = min(100, updates - done)
        drive_update(algo, chunk)
        done += chunk
    if state_file:
        with open(state_file, "wb") as f:
            pickle.dump(group.get_state(), f)
    return f"{updates} prewarm updates" + (f", state saved to {state_file}" if state_file else "")


def inductor_cudagraph_skips() -> int:
    """How many compiled graphs inductor has run without CUDA graphs in this process
    (dynamo mode "reduce-overhead" asks for them; a reason such as a CPU tensor in the
    graph makes inductor run that graph without, slower, and counts it here)."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def subnormals(learner: Any) -> dict[str, int]:
    counts = {}
    for name, optimizer in learner.get_optimizers_for_module("default_policy"):
        count = 0
        for state in optimizer.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                t = state[key]
                count += int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())
        counts[name] = count
    return counts


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` -> (NAME, the training settings); one clear error if malformed."""
    name, sep, body = text.partition("=")
    try:
        extra = json.loads(body) if sep and name else None
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, dict) or name in VARIANTS or name == "sac":
        raise SystemExit(
            f"--settings {text!r}: write NAME={{...}}, a new name and a JSON object of "
            "DRIVEConfig.training settings, e.g. 'heads_2={\"value_heads\": 2}'"
        )
    return name, extra


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--recipe", choices=["headline", "defaults", "file"], default="headline")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=10, help="C: DRIVE update steps per round")
    parser.add_argument("--sac-updates", type=int, default=10, help="SAC updates per round")
    parser.add_argument("--prewarm", type=int, default=1000)
    parser.add_argument("--state", help="save / load the prewarmed Learner state here")
    parser.add_argument(
        "--init-state",
        help="instead of --prewarm: networks and Adam moments from update_step.py --save-state",
    )
    parser.add_argument("--wins", action="store_true", help="time every variant, not only 'all'")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="these variants")
    parser.add_argument(
        "--fit-intervals",
        type=int,
        nargs="+",
        default=[],
        help="also time fit_every_K: f_hat fitted on every K-th step (model_fit_interval)",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=[],
        metavar="NAME=JSON",
        help="also time a DRIVE algorithm of its own with these training settings",
    )
    parser.add_argument("--no-sac", action="store_true")
    parser.add_argument("--peers", type=pathlib.Path, default=DEFAULT_PEERS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch threads of this process, where both learners run; several: each timed",
    )
    parser.add_argument(
        "--num-gpus-per-learner",
        type=float,
        default=0,
        help="RLlib's num_gpus_per_learner for both local Learners (1: DRIVE and SAC on the GPU)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    gpus = args.num_gpus_per_learner
    if gpus > 0 and not torch.cuda.is_available():
        raise SystemExit(
            f"--num-gpus-per-learner {gpus:g}: this machine has no CUDA device "
            "(torch.cuda.is_available() is False); leave it at 0 to time the Learners on CPU."
        )

    import ray

    torch.set_num_threads(args.threads[0])
    start_private_ray()
    extras = dict(parse_setting(text) for text in args.settings)
    drive = drive_algo(args.env, args.recipe, args.updates, args.seed, gpus=gpus)
    learner = drive.learner_group._learner
    if args.init_state:
        note = load_core_state(learner, args.init_state)
    else:
        note = prewarm(drive, args.prewarm, args.state)
    others = {}  # name -> a DRIVE algorithm of its own (--settings)
    cudagraph_skips = {}  # name -> graphs inductor ran without the CUDA graphs asked for
    for name, extra in extras.items():
        # A setting that fails to build or to run its first steps (a compiler error on a
        # new device, say) is reported and left out; the others are still timed.
        other = None
        skips_before = inductor_cudagraph_skips()
        try:
            other = drive_algo(args.env, args.recipe, args.updates, args.seed, extra, gpus)
            prewarm(other, args.prewarm, None)
        except Exception as error:  # noqa: BLE001 -- any failure of one variant
            print(f"--settings {name}: failed, left out: {type(error).__name__}: {error}")
            if other is not None:
                other.stop()
            continue
        others[name] = other
        if extra.get("torch_compile_learner_dynamo_mode") == "reduce-overhead":
            cudagraph_skips[name] = inductor_cudagraph_skips() - skips_before
            print(
                f"--settings {name}: inductor skipped CUDA graphs for "
                f"{cudagraph_skips[name]} graph(s) (0: every compiled graph replays as a CUDA "
                "graph; on a CPU there are none; TORCH_LOGS=cudagraphs logs each skip's reason)"
            )
    batch = drive.config.train_batch_size_per_learner
    sac = None if args.no_sac else sac_algo(args.peers, args.env, batch, args.seed, gpus)
    variants = args.variants or (list(VARIANTS) if args.wins else ["all"])
    if "all" not in variants:
        variants = ["all", *variants]
    settings = dict(VARIANTS)  # the variants' set_variant arguments, fit_every_K included
    for interval in args.fit_intervals:
        settings[f"fit_every_{interval}"] = (*VARIANTS["all"], interval)
        variants.append(f"fit_every_{interval}")
    # name -> (the DRIVE algorithm it times, its Learner's set_variant arguments); an
    # algorithm of its own runs with every win on and its own model_fit_interval.
    timed = {name: (drive, settings[name]) for name in variants}
    for name, other in others.items():
        timed[name] = (other, (*VARIANTS["all"], other.config.model_fit_interval))
    names = list(timed) + ([] if sac is None else ["sac"])

    def column(name: str, threads: int) -> str:
        return name if len(args.threads) == 1 else f"{name}@{threads}"

    # column -> (what it times, torch threads): every name at every --threads value
    columns = {column(name, threads): (name, threads) for threads in args.threads for name in names}

    # Untimed first calls: the replay actor imports the batch code, RLlib builds its
    # minibatch iterator and metrics (on a loaded machine that took minutes once).
    for algo in [drive, *others.values()]:
        drive_update(algo, args.updates)
    if sac is not None:
        sac_update(sac, batch, 1)
    labels = list(columns)
    times: dict[str, list[float]] = {label: [] for label in labels}
    applies: dict[str, list[float]] = {label: [] for label in labels if columns[label][0] != "sac"}
    fetch: list[float] = []
    for round_index in range(args.rounds):
        order = labels[round_index % len(labels) :] + labels[: round_index % len(labels)]
        for label in order:
            name, threads = columns[label]
            torch.set_num_threads(threads)
            if name == "sac":
                torch.set_flush_denormal(False)  # RLlib SAC as it ships
                times[label].append(sac_update(sac, batch, args.sac_updates))
            else:
                algo, arguments = timed[name]
                algo_learner = algo.learner_group._learner
                set_variant(algo_learner, *arguments)
                times[label].append(drive_update(algo, args.updates))
                applies[label].append(apply_gradients_ms(algo_learner))
        fetch.append(batch_fetch_ms(drive, args.updates * batch))
        print(
            f"round {round_index + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f}" for n in labels),
            flush=True,
        )
    set_variant(learner, *VARIANTS["all"])

    sizes = {k: getattr(drive.config, k) for k in HEADLINE}
    sizes["value_heads"] = drive.config.value_heads
    sizes["model_fit_interval"] = drive.config.model_fit_interval
    # precision as the headline Learner resolved it ("auto" -> bfloat16 or float32)
    module = learner.module["default_policy"].unwrapped()
    sizes["precision"] = module.spec.update.precision.value
    sizes["device"] = str(next(module.parameters()).device)  # --num-gpus-per-learner
    print(
        f"\n{args.env}, recipe {args.recipe}: {json.dumps(sizes)}; C {args.updates} per round, "
        f"{args.rounds} rounds, torch threads {args.threads}; {note}; loadavg "
        f"{os.getloadavg()[0]:.2f}; environment {json.dumps(timing_environment())}; "
        f"machine {json.dumps(machine())}"
    )
    print(f"subnormal floats in Adam's moments after the rounds: {subnormals(learner)}")
    print(
        f"replay: one C x B = {args.updates * batch}-row learner batch built and fetched "
        f"(ray.get): median {statistics.median(fetch):.1f} ms "
        f"({statistics.median(fetch) / args.updates:.2f} ms per update step)\n"
    )
    print(
        "ratios: median over rounds of the per-round ratio (with several --threads, to RLlib "
        "SAC and to 'all' at the same thread count)\n"
    )
    print(
        "| variant | ms per update step (median) | x RLlib SAC | x all | apply_gradients "
        "alone, ms | x all |"
    )
    print("|---|---|---|---|---|---|")
    rows = {}
    for label in labels:
        name, threads = columns[label]
        sac_label, all_label = column("sac", threads), column("all", threads)
        median = statistics.median(times[label])
        ratio = (
            statistics.median(a / b for a, b in zip(times[label], times[sac_label]))
            if sac is not None
            else float("nan")
        )
        vs_all = statistics.median(a / b for a, b in zip(times[label], times[all_label]))
        rows[label] = {
            "ms": median,
            "ratio_to_sac": ratio,
            "ratio_to_all": vs_all,
            "threads": threads,
            "rounds": times[label],
        }
        shown = label.replace("sac", "RLlib SAC", 1) if name == "sac" else label
        line = f"| {shown} | {median:.1f} | {ratio:.2f} | {vs_all:.2f} |"
        if label in applies:
            apply_vs_all = statistics.median(
                a / b for a, b in zip(applies[label], applies[all_label])
            )
            rows[label]["apply_gradients_ms"] = applies[label]
            line += f" {statistics.median(applies[label]):.2f} | {apply_vs_all:.2f} |"
        else:
            line += " | |"
        print(line)
    if args.json:
        write_figures(
            args.json,
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "rows": rows,
                "fetch_ms": fetch,
                "sizes": sizes,
                "settings": extras,
                "subnormals": subnormals(learner),
                "cudagraph_skips": cudagraph_skips,
            },
        )
    drive.stop()
    for other in others.values():
        other.stop()
    if sac is not None:
        sac.stop()
    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
