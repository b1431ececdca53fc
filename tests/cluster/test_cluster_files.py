"""The cluster files, checked offline: Ray's schema, placement resources, exposure, secrets.

No network and no cloud credentials: Ray's launcher fills in its defaults and
validates against `ray/autoscaler/ray-schema.json` without calling AWS.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from tests.cluster.conftest import (
    AWS_YAML,
    CLUSTER_DIR,
    CLUSTER_EXAMPLE,
    REPO,
    SIMULATED_NODES,
    load_yaml,
)

# Every file `ray up` or `rllib train file` reads, plus the scripts and policies beside them.
CLUSTER_FILES = sorted(CLUSTER_DIR.glob("*.yaml"))
ALL_FILES = sorted(
    path for path in CLUSTER_DIR.rglob("*") if path.is_file() and "__pycache__" not in path.parts
) + [CLUSTER_EXAMPLE]

NODE_TYPE_RESOURCE = {"head": "head", "gpu_learner": "learner", "cpu_rollout": "rollout"}


@pytest.fixture(scope="module")
def aws() -> dict[str, Any]:
    return load_yaml(AWS_YAML)


@pytest.fixture(scope="module")
def experiment() -> dict[str, Any]:
    ((_, experiment),) = load_yaml(CLUSTER_EXAMPLE).items()
    return experiment


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda path: path.name)
def test_cluster_yaml_validates_against_rays_schema(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load_yaml(path)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    # prepare_config merged nothing unexpected into the node types.
    assert set(prepared["available_node_types"]) == set(config["available_node_types"])


def test_a_broken_cluster_yaml_is_rejected(aws):
    """The check above can fail: a fractional resource breaks the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(aws)
    broken["available_node_types"]["head"]["resources"]["head"] = 0.5
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        validate_config(prepare_config(broken))


def test_node_types_carry_the_placement_resources(aws):
    node_types = aws["available_node_types"]
    assert set(node_types) == set(NODE_TYPE_RESOURCE)
    assert aws["head_node_type"] == "head"
    for name, node_type in node_types.items():
        resources = node_type["resources"]
        # Each node type offers its own custom resource and none of the others'.
        assert {key for key in resources if key not in ("CPU", "GPU")} == {NODE_TYPE_RESOURCE[name]}
        assert isinstance(resources["CPU"], int) and isinstance(resources["GPU"], int)

    head, learner, rollout = (node_types[name] for name in ("head", "gpu_learner", "cpu_rollout"))
    assert head["resources"]["GPU"] == 0
    # One learner slot per GPU, one EnvRunner slot per vCPU.
    assert learner["resources"]["learner"] == learner["resources"]["GPU"] >= 1
    assert rollout["resources"]["rollout"] == rollout["resources"]["CPU"]
    assert rollout["resources"]["GPU"] == 0
    # Spot for the rollout nodes only: a lost EnvRunner is recreated, a lost Learner is not.
    assert rollout["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert "InstanceMarketOptions" not in learner["node_config"]
    assert "InstanceMarketOptions" not in head["node_config"]
    for name in ("gpu_learner", "cpu_rollout"):
        assert 0 <= node_types[name]["min_workers"] <= node_types[name]["max_workers"]
    assert (
        sum(node_types[name]["max_workers"] for name in ("gpu_learner", "cpu_rollout"))
        <= aws["max_workers"]
    )


def test_images_pin_the_projects_ray_and_python(aws):
    # tomllib is 3.11+; the project supports 3.10, so read the pin with a regex.
    (ray_version,) = re.findall(
        r'"ray\[[a-z,]+\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text()
    )
    docker = aws["docker"]
    images = {docker["image"], docker["head_image"], docker["worker_image"]}
    images.add(aws["available_node_types"]["gpu_learner"]["docker"]["worker_image"])
    assert images == {
        f"rayproject/ray:{ray_version}-py311-cpu",
        f"rayproject/ray:{ray_version}-py311-gpu",
    }
    assert aws["available_node_types"]["gpu_learner"]["docker"]["worker_image"].endswith("-gpu")
    # The setup commands check the same versions inside the container.
    for commands in _setup_commands(aws).values():
        assert any(f"ray.__version__ == '{ray_version}'" in command for command in commands)
        assert any("(3, 11)" in command for command in commands)
        assert any("pip install" in command and "~/drive-rllib" in command for command in commands)


def test_every_node_installs_the_project_and_torch(aws):
    commands = _setup_commands(aws)
    assert set(commands) == {"head", "gpu_learner", "cpu_rollout"}
    for name, node_commands in commands.items():
        torch_installs = [c for c in node_commands if "torch==2.13.0" in c]
        assert len(torch_installs) == 1, name
        # CPU nodes take the CPU wheel (a fraction of the CUDA wheel's size).
        assert ("whl/cpu" in torch_installs[0]) == (name != "gpu_learner"), name
    assert "~/drive-rllib" in aws["file_mounts"]


def test_nothing_is_open_to_the_internet(aws):
    # Every node type names its own security group, so the launcher never
    # creates its default group (which opens SSH to 0.0.0.0/0).
    for name, node_type in aws["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), name
    for permission in aws["provider"].get("security_group", {}).get("IpPermissions", []):
        for entry in permission.get("IpRanges", []) + permission.get("Ipv6Ranges", []):
            assert entry.get("CidrIp", entry.get("CidrIpv6")) not in ("0.0.0.0/0", "::/0")
    # The dashboard (and its job API) listens on the head's loopback only.
    (start,) = [c for c in aws["head_start_ray_commands"] if "ray start --head" in c]
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in json.dumps(aws)


def test_token_authentication_is_on_and_the_token_is_not_in_the_file(aws):
    assert "--env RAY_AUTH_MODE=token" in aws["docker"]["run_options"]
    # The token travels as a file from the user's machine, never as text in the YAML.
    assert aws["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # SSH keys too: the launcher makes the key pair; the file names none.
    assert "ssh_private_key" not in aws["auth"]
    for commands in _setup_commands(aws).values():
        assert commands[0] == "chmod 600 ~/.ray/auth_token"


def test_iam_is_least_privilege(aws):
    node_types = aws["available_node_types"]
    # The head names its own profile (the launcher's default has EC2/S3 full access) ...
    assert node_types["head"]["node_config"]["IamInstanceProfile"] == {
        "Name": "drive-rllib-ray-head"
    }
    # ... and the workers get none: they never call AWS.
    for name in ("gpu_learner", "cpu_rollout"):
        assert "IamInstanceProfile" not in node_types[name]["node_config"]
    policy = json.loads((CLUSTER_DIR / "iam" / "head-policy.json").read_text())
    for statement in policy["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert not any(action.endswith("*") for action in actions), statement["Sid"]
        assert not any(action.startswith("iam:") for action in actions), statement["Sid"]
    s3 = [s for s in policy["Statement"] if any(a.startswith("s3:") for a in _as_list(s["Action"]))]
    assert s3 and all(
        "drive-rllib" in json.dumps(s["Resource"]) + json.dumps(s.get("Condition", {})) for s in s3
    )
    instance_writes = [
        s for s in policy["Statement"] if "ec2:TerminateInstances" in _as_list(s["Action"])
    ]
    assert [s["Condition"] for s in instance_writes] == [
        {"StringEquals": {"aws:ResourceTag/ray-cluster-name": aws["cluster_name"]}}
    ]


SECRET_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret key assignment": r"(?i)aws_secret_access_key\s*[:=]",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "Ray auth token value": r"(?i)RAY_AUTH_TOKEN\s*[:=]",
    "password": r"(?i)passw(or)?d\s*[:=]\s*\S",
    "long hex or base64 blob": r"\b[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=])",
    "AWS account id in an ARN": r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:\d{12}:",
}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_no_secrets_in_cluster_files(path):
    text = path.read_text()
    for name, pattern in SECRET_PATTERNS.items():
        match = re.search(pattern, text)
        assert match is None, (
            f"{path.relative_to(REPO)} holds what looks like a {name}: {match.group(0)!r}"
        )


@pytest.mark.parametrize(
    "text",
    [
        "aws_access_key_id: AKIAABCDEFGHIJKLMNOP",
        "aws_secret_access_key = x",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "RAY_AUTH_TOKEN=0123",
        "role: arn:aws:iam::123456789012:role/x",
    ],
)
def test_the_secret_patterns_catch_secrets(text):
    assert any(re.search(pattern, text) for pattern in SECRET_PATTERNS.values())


def test_cluster_experiment_asks_for_resources_the_cluster_offers(aws, experiment):
    config = experiment["config"]
    node_types = aws["available_node_types"]
    assert experiment["run"] == "DRIVE"
    assert str(experiment["storage_path"]).startswith("s3://")

    def capacity(node_type: str, resource: str) -> int:
        node = node_types[node_type]
        return node["resources"][resource] * (
            1 if node_type == aws["head_node_type"] else node["max_workers"]
        )

    # Learners: the learner resource, a GPU each, all fitting the learner nodes at max size.
    assert config["custom_resources_per_learner"] == {"learner": 1}
    assert config["num_gpus_per_learner"] == 1
    assert config["num_learners"] <= capacity("gpu_learner", "learner")
    learner_node = node_types["gpu_learner"]["resources"]
    assert config["num_cpus_per_learner"] <= learner_node["CPU"] / learner_node["learner"]
    # EnvRunners: the rollout resource, one CPU each.
    assert config["custom_resources_per_env_runner"] == {"rollout": 1}
    assert config["num_env_runners"] <= capacity("cpu_rollout", "rollout")
    rollout_node = node_types["cpu_rollout"]["resources"]
    assert config["num_cpus_per_env_runner"] * rollout_node["rollout"] <= rollout_node["CPU"]
    # The Algorithm and the replay actor on the head.
    assert set(config["custom_resources_for_main_process"]) == {"head"}
    assert set(config["replay_actor_resources"]) == {"head"}
    assert (
        config["custom_resources_for_main_process"]["head"]
        + config["replay_actor_resources"]["head"]
        <= node_types["head"]["resources"]["head"]
    )
    # T is spread evenly: a whole number of env steps per EnvRunner per iteration.
    assert (
        config["env_steps_per_iteration"]
        % (config["num_env_runners"] * config["num_envs_per_env_runner"])
        == 0
    )


def test_the_simulated_cluster_mirrors_the_node_types(aws):
    for name, node in SIMULATED_NODES.items():
        assert set(node["resources"]) == {NODE_TYPE_RESOURCE[name]}


def test_the_cluster_experiment_builds_a_valid_config(experiment):
    """The experiment's config is a DRIVEConfig that validates (without cluster resources)."""
    from drive_rllib.algorithm import DRIVEConfig

    config = DRIVEConfig().update_from_dict({**experiment["config"], "env": experiment["env"]})
    config.validate()
    assert config.num_learners == experiment["config"]["num_learners"]
    assert config.custom_resources_per_env_runner == {"rollout": 1}


def _setup_commands(aws: dict[str, Any]) -> dict[str, list[str]]:
    """The setup commands each node type runs (node-type lists replace the global ones)."""
    commands = {"head": aws["setup_commands"] + aws["head_setup_commands"]}
    for name, node_type in aws["available_node_types"].items():
        if name != aws["head_node_type"]:
            commands[name] = node_type.get(
                "worker_setup_commands", aws["setup_commands"] + aws["worker_setup_commands"]
            )
    return commands


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_cli_accepts_the_cluster_experiment():
    """`rllib train file` runs every check it makes before starting Ray, and passes."""
    experiments = pytest.importorskip("drive_rllib.cli.experiments")
    overrides = experiments.Overrides(
        stop=None, storage_path=None, num_samples=None, checkpoint_freq=None
    )
    notes: list[str] = []
    (experiment,), lines = experiments.experiments_from_file(
        str(CLUSTER_EXAMPLE), overrides, notes.append
    )
    experiments.check_experiment(experiment, lines.where)
    assert notes == []


def test_workers_are_launched_only_as_the_clusters_instance_types(aws):
    policy = json.loads((CLUSTER_DIR / "iam" / "head-policy.json").read_text())
    launches = [
        statement
        for statement in policy["Statement"]
        if "ec2:RunInstances" in _as_list(statement["Action"])
        and any(":instance/" in resource for resource in _as_list(statement["Resource"]))
    ]
    assert len(launches) == 1
    allowed = launches[0]["Condition"]["StringEquals"]["ec2:InstanceType"]
    node_types = {
        node["node_config"]["InstanceType"] for node in aws["available_node_types"].values()
    }
    assert sorted(allowed) == sorted(node_types)


def test_the_head_pins_boto3_and_the_token_is_private_before_it_is_copied(aws):
    head = _setup_commands(aws)["head"]
    assert any(re.fullmatch(r"pip install -q --no-cache-dir boto3==\d+\.\d+\.\d+", c) for c in head)
    # file_mounts copy with rsync -a (modes kept): the token must be 600 on this machine.
    assert "chmod 600 ~/.ray/auth_token" in AWS_YAML.read_text().split("file_mounts:")[0]
    readme = (CLUSTER_DIR / "README.md").read_text()
    assert "6379" in readme and "listen on all interfaces" in readme
