"""`ray up` / `ray down` of cluster/aws.yaml against a fake EC2 (moto) on 127.0.0.1.

The launcher runs for real: it reads the YAML, makes its key pair, picks the
subnets of our security group, launches the head with our instance profile and
tags, and starts the head's updater, which waits for SSH ([1/7] of its steps).
There the test stops: SSH goes through `ProxyCommand=false`, so nothing leaves
this machine and no setup command runs anywhere. Then `ray down` terminates
the head. Needs `moto[server]` (skipped without it); no real credentials.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import AWS_YAML, REPO, load_yaml

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (fake EC2)")
boto3 = pytest.importorskip("boto3")


def _load_script(path: pathlib.Path) -> ModuleType:
    """Imports a script that is not part of the package (cluster/security_group.py)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


security_group = _load_script(REPO / "cluster" / "security_group.py")

REGION = "us-west-2"
MY_CIDR = "203.0.113.7/32"  # TEST-NET-3, never a real address
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
UP_TIMEOUT_S = 90
DOWN_TIMEOUT_S = 90


@pytest.fixture
def fake_aws(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """A moto server on 127.0.0.1 and the environment that points boto3 (and `ray`) at it.

    HOME is a temporary directory, so the launcher's key pair and the auth token
    never touch the real ~/.ssh or ~/.ray.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("fake-token-for-the-file-mount")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        # No instance-metadata look-ups and no real config or credential files.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
    }
    env.update(
        aws,
        HOME=str(home),
        TMPDIR=str(tmp_path),
        NO_PROXY="127.0.0.1,localhost",
        RAY_USAGE_STATS_ENABLED="0",
    )
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NO_PROXY", env["NO_PROXY"])
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture
def ssh_control_dir() -> Iterator[None]:
    """Removes the SSH control directory `ray up` makes under /tmp, if this test made it."""
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    runner = SSHCommandRunner(
        log_prefix="",
        node_id="",
        provider=None,
        auth_config={"ssh_user": "ubuntu"},
        cluster_name=load_yaml(AWS_YAML)["cluster_name"],
        process_runner=subprocess,
        use_internal_ip=False,
    )
    cluster_dir = pathlib.Path(runner.ssh_control_path)
    if cluster_dir.exists():
        made = None
    elif cluster_dir.parent.exists():
        made = cluster_dir
    else:
        made = cluster_dir.parent
    try:
        yield
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def test_cidr_check_refuses_the_internet():
    for cidr in ("0.0.0.0/0", "::/0", "10.0.0.0/8"):
        with pytest.raises(ValueError, match="at most a /16"):
            security_group.check_cidr(cidr)
    assert security_group.check_cidr("203.0.113.7") == "203.0.113.7/32"


def test_security_group_script_opens_ssh_to_one_range_only(fake_aws):
    ec2 = boto3.client("ec2", region_name=REGION)
    group_id = security_group.ensure_security_group(ec2, MY_CIDR)
    assert _ingress(ec2, group_id) == {("tcp", 22, MY_CIDR), ("-1", None, group_id)}

    # A world-open rule added by hand, and a changed address: both old ranges go.
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8265,
                "ToPort": 8265,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    new_cidr = "198.51.100.0/24"
    assert security_group.ensure_security_group(ec2, new_cidr) == group_id
    assert _ingress(ec2, group_id) == {("tcp", 22, new_cidr), ("-1", None, group_id)}


def test_ray_up_launches_the_head_and_ray_down_terminates_it(fake_aws, ssh_control_dir, tmp_path):
    ec2 = boto3.client("ec2", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    group_id = security_group.ensure_security_group(ec2, MY_CIDR)
    iam.create_instance_profile(InstanceProfileName="drive-rllib-ray-head")

    config = load_yaml(AWS_YAML)
    for node_type in config["available_node_types"].values():
        node_type["node_config"]["SecurityGroupIds"] = [group_id]
    # The only change besides the group id: SSH never opens a connection.
    config["auth"]["ssh_proxy_command"] = "false"
    cluster_yaml = tmp_path / "aws.yaml"
    cluster_yaml.write_text(yaml.safe_dump(config))

    output = _run_until(
        [RAY, "up", "-y", "--no-config-cache", "--disable-usage-stats", str(cluster_yaml)],
        env=fake_aws,
        marker="Waiting for SSH to become available",
        timeout_s=UP_TIMEOUT_S,
    )
    assert "EC2 Security groups (all available node types): " + group_id in output
    assert "IAM Profile: drive-rllib-ray-head" in output

    (head,) = _instances(ec2)
    assert (
        head["InstanceType"]
        == config["available_node_types"]["head"]["node_config"]["InstanceType"]
    )
    assert head["IamInstanceProfile"]["Arn"].endswith(":instance-profile/drive-rllib-ray-head")
    assert [group["GroupId"] for group in head["SecurityGroups"]] == [group_id]
    assert "InstanceMarketOptions" not in head and head.get("InstanceLifecycle") != "spot"
    tags = {tag["Key"]: tag["Value"] for tag in head["Tags"]}
    assert tags["ray-cluster-name"] == "drive-rllib"
    assert tags["ray-user-node-type"] == "head"
    assert tags["ray-node-status"] == "waiting-for-ssh"
    # The launcher made no security group of its own, and ours is as we left it.
    vpc_groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [head["VpcId"]]}]
    )
    assert {group["GroupName"] for group in vpc_groups["SecurityGroups"]} == {
        "default",
        "drive-rllib-ray",
    }
    assert _ingress(ec2, group_id) == {("tcp", 22, MY_CIDR), ("-1", None, group_id)}
    # The key pair went to the temporary HOME.
    assert (tmp_path / "home" / ".ssh" / f"ray-autoscaler_{REGION}.pem").exists()

    down = subprocess.run(
        [RAY, "down", "-y", str(cluster_yaml)],
        check=False,
        env=fake_aws,
        capture_output=True,
        text=True,
        timeout=DOWN_TIMEOUT_S,
        cwd=REPO,
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert [instance["State"]["Name"] for instance in _instances(ec2)] == ["terminated"]


def _run_until(command: list[str], *, env: dict[str, str], marker: str, timeout_s: float) -> str:
    """Runs `command` until a line holds `marker`, then ends it (its own process group only)."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    lines: list[str] = []
    try:
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
                continue
            lines.append(line)
            if marker in line:
                return "".join(lines)
        output = "".join(lines)
        pytest.fail(
            f"`{' '.join(command[:3])}` never printed {marker!r} within {timeout_s} s:\n{output[-4000:]}"
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _instances(ec2: Any) -> list[dict[str, Any]]:
    return [
        instance
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    ]


def _ingress(ec2: Any, group_id: str) -> set[tuple[str, int | None, str]]:
    """(protocol, port, source range or group) of every ingress rule of the group."""
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    rules = set()
    for permission in group["IpPermissions"]:
        protocol, port = permission["IpProtocol"], permission.get("FromPort")
        for entry in permission.get("IpRanges", []):
            rules.add((protocol, port, str(ipaddress.ip_network(entry["CidrIp"]))))
        for entry in permission.get("Ipv6Ranges", []):
            rules.add((protocol, port, entry["CidrIpv6"]))
        for entry in permission.get("UserIdGroupPairs", []):
            rules.add((protocol, port, entry["GroupId"]))
    return rules
