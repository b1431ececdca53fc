"""What DRIVE asks Ray for, and what to change when the cluster cannot give it.

`with_replay_bundle` adds the replay actor's custom resources to RLlib's
request; `resource_request` totals the request; `resource_shortfall` and
`replay_start_error` say, in one line each, which setting to lower or which
node to start.
"""

from __future__ import annotations

from typing import Any

from ray.tune.execution.placement_groups import PlacementGroupFactory

from drive_rllib.algorithm.config import DRIVEConfig

__all__ = [
    "REPLAY_START_TIMEOUT_S",
    "replay_start_error",
    "resource_request",
    "resource_shortfall",
    "with_replay_bundle",
]

#: How long setup() waits for the replay actor to be scheduled.
REPLAY_START_TIMEOUT_S = 120


def with_replay_bundle(
    factory: PlacementGroupFactory, config: DRIVEConfig | dict[str, Any]
) -> PlacementGroupFactory:
    """RLlib's request ``factory``, plus one bundle for the replay actor's custom resources.

    Under Tune every actor of a trial is scheduled in the trial's placement
    group, so an actor asking for e.g. ``{"head": 0.01}`` only starts if a
    bundle carries that resource.
    """
    resources = (
        config.get("replay_actor_resources")
        if isinstance(config, dict)
        else config.replay_actor_resources
    )
    if not resources:
        return factory
    return PlacementGroupFactory(
        bundles=[*factory.bundles, {"CPU": 0, **resources}], strategy=factory.strategy
    )


def resource_request(
    config: DRIVEConfig | dict[str, Any], include_main_process: bool = True
) -> dict[str, float]:
    """What the Algorithm asks Ray for in all (CPU, GPU, custom resources), as Tune's
    placement group would hold it; without the main process's bundle when
    ``include_main_process`` is False (``config.build_algo()`` outside Tune)."""
    from drive_rllib.algorithm.drive import DRIVE  # drive.py imports this module

    bundles = DRIVE.default_resource_request(config).bundles
    if not include_main_process:
        bundles = bundles[1:]
    total: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0.0) + float(amount)
    return {name: amount for name, amount in total.items() if amount > 0}


def resource_shortfall(
    config: DRIVEConfig | dict[str, Any],
    available: dict[str, float],
    include_main_process: bool = True,
) -> str | None:
    """One line saying what to lower when ``config`` asks for more than ``available``
    (e.g. ``ray.cluster_resources()``), or None when it fits."""
    if isinstance(config, dict):
        config = DRIVEConfig().update_from_dict(config)
    need = resource_request(config, include_main_process)
    short = {
        name: (amount, float(available.get(name, 0.0)))
        for name, amount in need.items()
        if amount > available.get(name, 0.0) + 1e-9
    }
    if not short:
        return None
    runners, learners = config.num_env_runners, config.num_learners
    parts = []
    if include_main_process:
        parts.append(f"main process {config.num_cpus_for_main_process:g} CPU")
    if runners:
        parts.append(
            f"{runners} env runner(s) x {config.num_cpus_per_env_runner:g} CPU"
            + (
                f" + {config.num_gpus_per_env_runner:g} GPU"
                if config.num_gpus_per_env_runner
                else ""
            )
        )
    if learners:
        cpus = config.num_cpus_per_learner
        if cpus == "auto":  # RLlib's default: 1 CPU, or none beside a GPU
            cpus = 0 if config.num_gpus_per_learner else 1
        parts.append(
            f"{learners} learner(s) x {cpus:g} CPU"
            + (f" + {config.num_gpus_per_learner:g} GPU" if config.num_gpus_per_learner else "")
        )
    asked = ", ".join(
        f"{amount:g} {name} (the cluster has {have:g})" for name, (amount, have) in short.items()
    )
    fixes = []
    if "CPU" in short:
        if runners:
            fixes.append("num_env_runners")
        if learners:
            fixes.append("num_learners or num_cpus_per_learner (e.g. 0.5)")
        if include_main_process and not runners and not learners:
            fixes.append("num_cpus_for_main_process")
    if "GPU" in short:
        fixes.append("num_gpus_per_learner / num_gpus_per_env_runner (0 on a CPU machine)")
    if set(short) - {"CPU", "GPU"}:
        fixes.append("replay_actor_resources / custom resources, or start nodes offering them")
    return (
        f"DRIVE asks Ray for {asked} ({', '.join(parts) or 'see config'}), so it would wait "
        f"forever: lower {', '.join(fixes) or 'the resources asked for'}, or use a larger "
        "cluster."
    )


def replay_start_error(resources: dict[str, float] | None) -> str:
    """What to change when the replay actor did not answer within the start timeout."""
    busy = (
        "its worker process did not get to run: Ray starts workers at niceness 15, so on "
        "a machine busy with other jobs they can starve (start Ray with the environment "
        "variable RAY_worker_niceness=0, or free the machine)"
    )
    if not resources:
        return f"The replay actor did not start within {REPLAY_START_TIMEOUT_S} s: {busy}."
    return (
        f"The replay actor did not start within {REPLAY_START_TIMEOUT_S} s: no node offers "
        f"its resources {resources}, or {busy}. Start a node with them (e.g. the head of "
        "cluster/aws.yaml offers `head: 1`) or change "
        "config.training(replay_actor_resources=...)."
    )
