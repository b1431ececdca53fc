"""DRIVE on a simulated multi-node cluster: every actor lands on the node type meant for it.

Three Ray nodes run on this machine (`ray.cluster_utils.Cluster`), each with the
custom resource of one node type of cluster/aws.yaml. The cluster experiment
(tuned_examples/drive_halfcheetah_cluster.yaml) runs through Tune as `rllib
train file` runs it, with its placement settings unchanged and only its size
shrunk; a callback in the Algorithm reports the node of every actor.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow.fs
import pytest

from drive_rllib.tiny import TINY_NETWORKS
from tests.cluster.conftest import CLUSTER_EXAMPLE, load_yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MODULE_ID = "default_policy"
ITERATIONS = 3
#: A trial whose placement group no node can fill waits forever; give up after this.
TUNE_TIMEOUT_S = 300
# The cluster experiment, shrunk to this machine: T env steps and C updates of B rows.
T, C, B = 40, 4, 32
SHRINK: dict[str, Any] = {
    **TINY_NETWORKS,
    "num_learners": 2,
    "num_gpus_per_learner": 0,
    "num_cpus_per_learner": 0.5,
    "num_env_runners": 2,
    "num_cpus_per_env_runner": 1,
    "env_steps_per_iteration": T,
    "updates_per_iteration": C,
    "train_batch_size_per_learner": B,
    "num_warmup_steps": T,
    "replay_capacity": 1_000,
    "model_eval_interval": 2,
    "model_eval_batch_size": 16,
}


def report_placement(
    algorithm: Any, metrics_logger: Any = None, result: dict | None = None, **kwargs: Any
) -> None:
    """`on_train_result` callback: the node id of every actor of the Algorithm, into the result."""
    import ray

    def node_id(*_: Any) -> str:
        return ray.get_runtime_context().get_node_id()

    result["placement"] = {
        "main_process": node_id(),
        "learners": [call.get() for call in algorithm.learner_group.foreach_learner(node_id)],
        "env_runners": algorithm.env_runner_group.foreach_env_runner(
            node_id, local_env_runner=False
        ),
        "replay": ray.get(algorithm.replay_actor.__ray_call__.remote(node_id)),
    }


def test_cluster_experiment_places_every_actor_on_its_node_type(simulated_cluster, tmp_path):
    from ray import tune

    from drive_rllib.algorithm import DRIVE, register

    ((name, experiment),) = load_yaml(CLUSTER_EXAMPLE).items()
    experiment = copy.deepcopy(experiment)
    placement_settings = {
        key: experiment["config"][key]
        for key in (
            "custom_resources_for_main_process",
            "custom_resources_per_learner",
            "custom_resources_per_env_runner",
            "replay_actor_resources",
        )
    }
    assert placement_settings == {
        "custom_resources_for_main_process": {"head": 0.01},
        "custom_resources_per_learner": {"learner": 1},
        "custom_resources_per_env_runner": {"rollout": 1},
        "replay_actor_resources": {"head": 0.01},
    }
    experiment["config"].update(SHRINK, callbacks_on_train_result=report_placement)
    experiment.update(
        stop={"training_iteration": ITERATIONS},
        storage_path=str(tmp_path),
        checkpoint_config={"checkpoint_at_end": True},
    )

    register()
    # Inside the trial's placement group an actor asking for `head` waits
    # forever unless a bundle of the group carries it: fail here, not hang.
    bundles = DRIVE.default_resource_request(
        {**experiment["config"], "env": experiment["env"]}
    ).bundles
    assert sum("head" in bundle for bundle in bundles) == 2, (
        f"bundles {bundles}: DRIVE.default_resource_request must add one for the replay actor"
    )

    start = time.monotonic()
    trials = _run_bounded(
        lambda: tune.run_experiments({name: experiment}, verbose=0), TUNE_TIMEOUT_S
    )
    (trial,) = trials
    assert trial.status == "TERMINATED"
    print(f"{ITERATIONS} iterations on the simulated cluster in {time.monotonic() - start:.0f} s")

    result = trial.last_result
    placement = result["placement"]
    node_type = simulated_cluster
    assert [node_type[node] for node in placement["learners"]] == ["gpu_learner"] * 2
    assert [node_type[node] for node in placement["env_runners"]] == ["cpu_rollout"] * 2
    assert node_type[placement["main_process"]] == "head"

    # Training made progress: every sampled step reached the replay actor and
    # each iteration ran C update steps on both learners.
    assert result["num_env_steps_sampled_lifetime"] == ITERATIONS * T
    assert result["replay/size"] == ITERATIONS * T
    learner = result["learners"][MODULE_ID]
    assert learner["training/update_steps_lifetime"] == ITERATIONS * C
    assert math.isfinite(learner["loss/total"])

    # The checkpoint holds the replay contents (written by the replay actor on the head).
    checkpoint = trial.checkpoint
    assert checkpoint is not None
    files = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(checkpoint.path))
    assert "replay.npz" in {info.base_name for info in files}

    # `replay_actor_resources` pins the replay actor to the head.
    assert node_type[placement["replay"]] == "head"


def _run_bounded(function: Callable[[], Any], timeout_s: float) -> Any:
    """`function()` in a thread; fails the test if it has not returned after `timeout_s`.

    The fixture's teardown then shuts the simulated cluster down, which ends the thread.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 -- re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="tune", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(
            f"Tune did not finish within {timeout_s} s: a resource request no node of the "
            "simulated cluster can fill (see `ray status`-like warnings above)?"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
