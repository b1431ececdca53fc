"""Env steps per second into DRIVE's replay, against the raw env rate measured in the same run.

For every configuration ``K:E:loop`` (K EnvRunners, 0 = the driver's local
runner; E vectorised envs per runner; loop ``lean`` = DRIVEEnvRunner's own
loop, ``rllib`` = RLlib's connector/episode loop) this builds DRIVE on the env
and measures:

- learning off: ``synchronous_parallel_sample`` of T env steps, pi_theta
  acting, exactly as ``DRIVE.training_step`` calls it; a call ends once the
  runners' transitions are in the replay actor (they wait for the add);
- learning on (``--learning``): ``algo.train()`` iterations of T env steps and
  C update steps; the sampling phase's rate (RLlib's env-runner sampling
  timer) and the whole iteration's env steps per second;
- the raw env rate: one process (this one), one env, ``env.step`` with
  pre-drawn uniform actions, measured right before every configuration.

The ratio is rate / (max(K, 1) x raw): 1.0 is every runner stepping as fast as
a bare env in a loop. For K >= 1 the raw rate is measured in a Ray worker,
whose niceness (Ray's default 15, ``--worker-niceness``) the runners share.

    python benchmarks/collection.py                        # the README table
    python benchmarks/collection.py --configs 0:8:lean 1:8:lean --learning --steps 4000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
from timing_environment import start_private_ray, write_figures

DEFAULT_CONFIGS = [
    "0:1:rllib",
    "0:8:rllib",
    "0:1:lean",
    "0:8:lean",
    "1:8:rllib",
    "1:8:lean",
    "2:8:lean",
]


def raw_env_rate(env_id: str, steps: int, seed: int = 0) -> float:
    """Env steps per second of one env stepped in a loop with pre-drawn uniform actions."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.reset(seed=seed)
    actions = (
        np.random.default_rng(seed)
        .uniform(env.action_space.low, env.action_space.high, (steps, *env.action_space.shape))
        .astype(env.action_space.dtype)
    )
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def raw_env_rate_in_worker(env_id: str, steps: int) -> float:
    """``raw_env_rate`` in a Ray worker process: the niceness and placement EnvRunners get."""
    import ray

    return ray.get(ray.remote(num_cpus=0)(raw_env_rate).remote(env_id, steps))


def build(env_id: str, runners: int, envs: int, lean: bool, steps: int, updates: int) -> Any:
    from drive_rllib.algorithm import DRIVEConfig

    config = (
        DRIVEConfig()
        .environment(env_id)
        .env_runners(num_env_runners=runners, num_envs_per_env_runner=envs)
        .learners(num_learners=0)
        .training(
            env_steps_per_iteration=steps,
            updates_per_iteration=updates,
            num_warmup_steps=0,
            lean_collection=lean,
            model_eval_interval=0,
            holdout_every=0,
        )
    )
    return config.build_algo()


def sample_rate(algo: Any, steps: int) -> float:
    """Env steps per second of one training_step-style sampling call (policy acting)."""
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    start = time.perf_counter()
    _, metrics = synchronous_parallel_sample(
        worker_set=algo.env_runner_group,
        max_env_steps=steps,
        random_actions=False,
        _uses_new_env_runners=True,
        _return_metrics=True,
    )
    elapsed = time.perf_counter() - start
    sampled = sum(m["num_env_steps_sampled"].peek() for m in metrics)
    return sampled / elapsed


def learning_rates(algo: Any, iterations: int) -> tuple[float, float]:
    """(sampling-phase env steps/s, whole-iteration env steps/s) over ``iterations`` train()."""
    sampling, whole = [], []
    for _ in range(iterations):
        before = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0)
        start = time.perf_counter()
        result = algo.train()
        elapsed = time.perf_counter() - start
        after = result["env_runners"]["num_env_steps_sampled_lifetime"]
        timer = result["timers"]["env_runner_sampling_timer"]
        sampling.append((after - before) / timer)
        whole.append((after - before) / elapsed)
    return statistics.median(sampling), statistics.median(whole)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="K:E:lean|rllib")
    parser.add_argument("--steps", type=int, default=4000, help="T env steps per call")
    parser.add_argument("--rounds", type=int, default=3, help="sampling calls per configuration")
    parser.add_argument("--learning", action="store_true", help="also measure with learning on")
    parser.add_argument("--updates", type=int, default=20, help="C per iteration (learning on)")
    parser.add_argument("--raw-steps", type=int, default=5000)
    parser.add_argument(
        "--worker-niceness",
        type=int,
        help="niceness of Ray's worker processes (Ray's default is 15, which starves "
        "EnvRunners on a machine busy with other jobs; the raw rate is measured in a "
        "worker of the same niceness either way)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    import ray
    import torch

    if args.worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    torch.set_num_threads(1)
    start_private_ray()
    rows = []
    for spec in args.configs:
        runners, envs, loop = spec.split(":")
        runners, envs = int(runners), int(envs)
        # The raw rate where the runners step: this process for K = 0, a Ray worker else.
        measure_raw = raw_env_rate if runners == 0 else raw_env_rate_in_worker
        raw = measure_raw(args.env, args.raw_steps)
        algo = build(args.env, runners, envs, loop == "lean", args.steps, args.updates)
        sample_rate(algo, args.steps)  # first reset, module and env warm-up
        rates = [sample_rate(algo, args.steps) for _ in range(args.rounds)]
        raw = statistics.median([raw, measure_raw(args.env, args.raw_steps)])
        row = {
            "runners": runners,
            "envs": envs,
            "loop": loop,
            "raw": raw,
            "rate": statistics.median(rates),
            "rates": rates,
        }
        row["ratio"] = row["rate"] / (max(runners, 1) * raw)
        if args.learning:
            row["sampling_rate_learning"], row["iteration_rate_learning"] = learning_rates(
                algo, args.rounds
            )
            row["ratio_learning"] = row["sampling_rate_learning"] / (max(runners, 1) * raw)
        algo.stop()
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(
        f"\n{args.env}, T {args.steps} env steps per call, median of {args.rounds} calls, "
        f"policy acting (256x256 pi_theta), loadavg {os.getloadavg()[0]:.2f}\n"
    )
    header = "| K runners | E envs each | loop | raw env steps/s | into replay, steps/s | ratio"
    print(
        header
        + (" | learning on: sampling / iteration steps/s | ratio |" if args.learning else " |")
    )
    print("|---" * (8 if args.learning else 6) + "|")
    for row in rows:
        line = (
            f"| {row['runners']} | {row['envs']} | {row['loop']} | {row['raw']:,.0f} | "
            f"{row['rate']:,.0f} | {row['ratio']:.3f} |"
        )
        if args.learning:
            line += (
                f" {row['sampling_rate_learning']:,.0f} / "
                f"{row['iteration_rate_learning']:,.0f} | {row['ratio_learning']:.3f} |"
            )
        print(line)
    if args.json:
        write_figures(args.json, {"rows": rows, "args": vars(args)})
    ray.shutdown()


if __name__ == "__main__":
    main()
