"""Fixtures of the cluster tests: the repo's cluster files and a simulated multi-node cluster."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

# Ray 2.60 turns on token authentication for new local clusters unless this is set;
# these tests start their own throwaway cluster, so switch it off explicitly.
os.environ["RAY_AUTH_MODE"] = "disabled"

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO / "cluster"
AWS_YAML = CLUSTER_DIR / "aws.yaml"
CLUSTER_EXAMPLE = REPO / "tuned_examples" / "drive_halfcheetah_cluster.yaml"

#: The simulated cluster: one Ray node per node type of cluster/aws.yaml, each
#: carrying that type's custom resource (logical CPUs; this machine has two cores).
SIMULATED_NODES: dict[str, dict[str, Any]] = {
    "head": {"num_cpus": 2, "resources": {"head": 1}},
    "gpu_learner": {"num_cpus": 2, "resources": {"learner": 2}},
    "cpu_rollout": {"num_cpus": 2, "resources": {"rollout": 2}},
}


def load_yaml(path: pathlib.Path) -> dict[str, Any]:
    with open(path) as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def simulated_cluster() -> Iterator[dict[str, str]]:
    """Three Ray nodes on this machine (`ray.cluster_utils.Cluster`), this process connected.

    Yields a map from node id to node type name. Everything it starts is shut
    down at the end; it never attaches to another Ray instance on the machine.
    """
    import ray
    import ray._private.utils
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; refusing to share it.")
    with pytest.MonkeyPatch.context() as patch:
        # Cluster() records its address in /tmp/ray/ray_current_cluster, where a
        # plain `ray.init()` of anyone else on this machine would find it: don't.
        patch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
        cluster = Cluster()
        try:
            node_types = {}
            for name, node_args in SIMULATED_NODES.items():
                if name == "head":
                    node = cluster.add_node(**node_args, include_dashboard=False)
                else:
                    node = cluster.add_node(**node_args)
                node_types[node.node_id] = name
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
            try:
                yield node_types
            finally:
                ray.shutdown()
        finally:
            cluster.shutdown()
