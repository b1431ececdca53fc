"""A seeded short DRIVE training run whose metrics must not change under a refactor.

Runs DRIVE through RLlib on Pendulum-v1 with seed 0 (one local EnvRunner,
one local Learner, one torch thread): 15 iterations of 100 env steps, learning
after 300 warm-up steps, 50 update steps per iteration, so 1,500 env steps and
650 update steps. Two variants cover both branches of every setting of the
update (joint / distill, split / cross-entropy value loss, N = 1 / 2, one
member per step / per trajectory, entropy floor and termination head on / off).
Each iteration's Learner metrics and the driver's DRIVE metrics are written to
JSON, with a SHA-256 of the Learner's RLModule state (every parameter and
buffer) after the last iteration.

    python benchmarks/determinism_check.py --out runs/before.json
    python benchmarks/determinism_check.py --out runs/after.json
    python benchmarks/determinism_check.py --compare runs/before.json runs/after.json

On a busy machine, ``--nice 15`` lowers the run's priority once Ray has started.

``--compare`` maps metric keys renamed since the first file (`RENAMED`),
ignores keys that change between two runs of the same code (timers and
throughputs: `is_timing`), and reports every other value that differs. Exit
status 0 when the two runs agree bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from typing import Any

from drive_rllib.tiny import TINY_NETWORKS

#: Pendulum-v1, tiny networks on batches of 64, Algorithm 1 with T = 100, C = 50, 300
#: warm-up steps.
BASE: dict[str, Any] = {
    **TINY_NETWORKS,
    "train_batch_size_per_learner": 64,
    "env_steps_per_iteration": 100,
    "updates_per_iteration": 50,
    "num_warmup_steps": 300,
    "model_eval_interval": 100,
    "model_eval_batch_size": 128,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {"horizon": 3},
    "other_branches": {
        "horizon": 2,
        "num_samples": 2,
        "policy_update": "distill",
        "value_loss": "cross_entropy",
        "member_per_trajectory": True,
        "entropy_floor": False,
        "termination": "none",
    },
}
ITERATIONS = 15
MODULE_ID = "default_policy"
#: Driver-level DRIVE metrics recorded next to the Learner's.
DRIVER_KEYS = ("replay/size", "training/warmup", "training/update_steps")

#: Metric keys renamed since older runs (old key -> new key). Several old keys named one
#: quantity twice (`posterior/J_U` and `loss/return`, `kl/prior` and `loss/kl_prior`,
#: ...); each maps to the one name that is kept, and must have been equal.
RENAMED = {
    "loss/model_nll": "model/nll_per_member",
    "loss/value_cross_entropy": "value/cross_entropy",
    "posterior/J_U": "loss/return",
    "kl/prior": "loss/kl_prior",
    "kl/value": "loss/kl_value",
    "kl/distill": "loss/distill",
    # Old code logged the term `loss/termination` (summed over members) and then
    # overwrote it with the per-member value under the same key.
    "loss/termination": "model/termination_per_member",
}


def is_timing(key: str) -> bool:
    """Keys that measure wall time (differ between two runs of the same code)."""
    leaf = key.rsplit("/", 1)[-1]
    return (
        "timer" in key
        or "throughput" in key
        or leaf.endswith(("_s", "_ms", "_time", "time_s", "per_s"))
        or "_per_s" in leaf
        or leaf in {"time_this_iter_s", "time_total_s", "timestamp", "date"}
    )


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def as_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def run_variant(settings: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from drive_rllib.algorithm import DRIVEConfig

    config = (
        DRIVEConfig()
        .environment("Pendulum-v1")
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .debugging(seed=0)
        .training(**{**BASE, **settings})
    )
    algo = config.build_algo()
    iterations = []
    try:
        for _ in range(ITERATIONS):
            result = algo.train()
            learner = flatten(result.get("learners", {}).get(MODULE_ID, {}))
            row = {
                f"learners/{MODULE_ID}/{key}": as_number(value)
                for key, value in learner.items()
                if as_number(value) is not None
            }
            flat = flatten(result)
            row.update({key: as_number(flat.get(key)) for key in DRIVER_KEYS})
            row["env_runners/episode_return_mean"] = as_number(
                flat.get("env_runners/episode_return_mean")
            )
            iterations.append(row)

        def state(learner: Any) -> dict[str, Any]:
            module = learner.module[MODULE_ID].unwrapped()
            return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

        (module_state,) = [r.get() for r in algo.learner_group.foreach_learner(state)]
    finally:
        algo.stop()
    digest = hashlib.sha256()
    for key in sorted(module_state):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(module_state[key]).tobytes())
    return {"iterations": iterations, "module_state_sha256": digest.hexdigest()}


def run(out: str, niceness: int = 0) -> None:
    import ray
    import torch

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    torch.set_num_threads(1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    # The EnvRunner and the Learner run in this process: lower its priority only now,
    # since a niced raylet may miss Ray's fixed 30 s registration deadline on a busy machine.
    os.nice(niceness)
    try:
        document = {name: run_variant(settings) for name, settings in VARIANTS.items()}
    finally:
        ray.shutdown()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=1, sort_keys=True)
    for name, variant in document.items():
        last = variant["iterations"][-1]
        total = last.get(f"learners/{MODULE_ID}/loss/total")
        print(
            f"{name}: loss/total {total!r} at the last iteration, state {variant['module_state_sha256'][:16]}"
        )
    print(f"wrote {out}")


def renamed(row: dict[str, float | None]) -> tuple[dict[str, float | None], list[str]]:
    """The row under today's keys, and every pair of old keys that named one quantity but
    held different values. An old key is renamed only in a row that lacks its new key (a
    row of the old code): ``loss/termination`` is a key of today's code as well."""
    prefix = f"learners/{MODULE_ID}/"
    mapped: dict[str, float | None] = {}
    conflicts = []
    for key, value in row.items():
        leaf = key[len(prefix) :] if key.startswith(prefix) else None
        new_key = prefix + RENAMED[leaf] if leaf in RENAMED else key
        if new_key != key and new_key in row:
            new_key = key
        if new_key in mapped:
            if not same(mapped[new_key], value):
                conflicts.append(f"{key} -> {new_key}: {mapped[new_key]!r} vs {value!r}")
            continue
        mapped[new_key] = value
    return mapped, conflicts


def same(first: float | None, second: float | None) -> bool:
    if first is None or second is None:
        return first is second
    return first == second or (math.isnan(first) and math.isnan(second))


def compare(before_file: str, after_file: str) -> int:
    with open(before_file, encoding="utf-8") as file:
        before = json.load(file)
    with open(after_file, encoding="utf-8") as file:
        after = json.load(file)
    status = 0
    for name in before:
        old_rows, new_rows = before[name]["iterations"], after[name]["iterations"]
        differing: dict[str, int] = {}
        compared: set[str] = set()
        only_old: set[str] = set()
        only_new: set[str] = set()
        for index, (old_row, new_row) in enumerate(zip(old_rows, new_rows)):
            mapped, conflicts = renamed(old_row)
            for conflict in conflicts:
                print(f"{name} iteration {index + 1}: old keys disagree: {conflict}")
                status = 1
            for key in mapped.keys() | new_row.keys():
                if is_timing(key):
                    continue
                if key not in new_row:
                    only_old.add(key)
                elif key not in mapped:
                    only_new.add(key)
                else:
                    compared.add(key)
                    if not same(mapped[key], new_row[key]):
                        differing[key] = differing.get(key, 0) + 1
        same_state = before[name]["module_state_sha256"] == after[name]["module_state_sha256"]
        print(
            f"{name}: {len(old_rows)} vs {len(new_rows)} iterations, {len(compared)} keys "
            f"compared, {len(differing)} differ; RLModule state "
            f"{'identical' if same_state else 'DIFFERS'} "
            f"({after[name]['module_state_sha256'][:16]})"
        )
        for key, count in sorted(differing.items()):
            print(f"  differs in {count} iterations: {key}")
        for key in sorted(only_old):
            print(f"  only before: {key}")
        for key in sorted(only_new):
            print(f"  only after: {key}{termination_note(old_rows, new_rows, key)}")
        if differing or not same_state or len(old_rows) != len(new_rows):
            status = 1
    print("bit-identical" if status == 0 else "NOT identical")
    return status


def termination_note(
    old_rows: list[dict[str, float | None]], new_rows: list[dict[str, float | None]], key: str
) -> str:
    """For the termination term, which the old code overwrote: its ratio to the old
    (per-member) value, which should be E."""
    prefix = f"learners/{MODULE_ID}/"
    if key != prefix + "loss/termination":
        return ""
    ratios = [
        new[key] / old[key]
        for old, new in zip(old_rows, new_rows)
        if old.get(key) and new.get(key) is not None
    ]
    if not ratios:
        return ""
    return f" (= {min(ratios):.6f}..{max(ratios):.6f} x the old per-member value)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="write this run's metrics to this JSON file")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument(
        "--nice", type=int, default=0, help="lower this process's priority by N once Ray is up"
    )
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    if not args.out:
        parser.error("give --out FILE.json or --compare BEFORE AFTER")
    run(args.out, args.nice)


if __name__ == "__main__":
    main()
