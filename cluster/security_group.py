"""Creates (or updates) the security group of cluster/aws.yaml and prints its id.

The group lets in SSH (22/tcp) from one address range only, and all traffic
between members of the group (Ray's own ports between the nodes). Nothing
else: the dashboard and the job API are reached through an SSH tunnel
(`ray dashboard cluster/aws.yaml`), not a public port.

    python cluster/security_group.py --cidr 203.0.113.7/32 --region us-west-2

Run it again when your address changes: SSH rules for any other range are
revoked. Needs boto3 and AWS credentials, like `ray up` itself.

Why not `provider.security_group.IpPermissions` in the cluster YAML: those
rules are *added* to the group the launcher creates, and the launcher always
opens SSH to 0.0.0.0/0 in that group. A group of your own, listed under
`SecurityGroupIds` of every node type, is left as it is.
"""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

DEFAULT_GROUP_NAME = "drive-rllib-ray"
SSH_PORT = 22
#: Address ranges broader than this many hosts are refused (a /16 in IPv4).
MAX_HOSTS = 2**16


def check_cidr(cidr: str) -> str:
    """The normalised range, or ValueError if it is malformed or too broad."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.num_addresses > MAX_HOSTS:
        raise ValueError(
            f"{cidr} covers {network.num_addresses} addresses; give your own address "
            "(e.g. 203.0.113.7/32) or your organisation's range, at most a /16."
        )
    return str(network)


def ssh_rule(cidr: str) -> dict[str, Any]:
    """The ingress rule letting SSH in from `cidr` (IPv4 or IPv6)."""
    network = ipaddress.ip_network(cidr)
    ranges = (
        {"IpRanges": [{"CidrIp": str(network), "Description": "SSH for ray up / ray dashboard"}]}
        if network.version == 4
        else {
            "Ipv6Ranges": [
                {"CidrIpv6": str(network), "Description": "SSH for ray up / ray dashboard"}
            ]
        }
    )
    return {"IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT, **ranges}


def intra_cluster_rule(group_id: str) -> dict[str, Any]:
    """The ingress rule letting all traffic in from members of the group itself."""
    return {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}


def stale_rules(permissions: list[dict[str, Any]], cidr: str) -> list[dict[str, Any]]:
    """The parts of existing ingress rules open to an address range other than SSH from `cidr`.

    Rules between group members are kept; every range-based rule except SSH
    from `cidr` (a world-open SSH rule, an old address, any other port) is
    returned for revocation.
    """
    stale = []
    for permission in permissions:
        is_ssh = (
            permission.get("IpProtocol"),
            permission.get("FromPort"),
            permission.get("ToPort"),
        ) == (
            "tcp",
            SSH_PORT,
            SSH_PORT,
        )
        kept = {cidr} if is_ssh else set()
        ranges = [
            {"CidrIp": r["CidrIp"]}
            for r in permission.get("IpRanges", [])
            if r["CidrIp"] not in kept
        ]
        ranges6 = [
            {"CidrIpv6": r["CidrIpv6"]}
            for r in permission.get("Ipv6Ranges", [])
            if r["CidrIpv6"] not in kept
        ]
        if not (ranges or ranges6):
            continue
        rule = {
            key: permission[key]
            for key in ("IpProtocol", "FromPort", "ToPort")
            if key in permission
        }
        if ranges:
            rule["IpRanges"] = ranges
        if ranges6:
            rule["Ipv6Ranges"] = ranges6
        stale.append(rule)
    return stale


def has_rule(permissions: list[dict[str, Any]], rule: dict[str, Any]) -> bool:
    """Whether `rule` (one range or one group) is already among `permissions`."""
    for permission in permissions:
        if permission.get("IpProtocol") != rule["IpProtocol"]:
            continue
        if rule["IpProtocol"] != "-1" and (
            permission.get("FromPort"),
            permission.get("ToPort"),
        ) != (rule["FromPort"], rule["ToPort"]):
            continue
        for key, field in (
            ("IpRanges", "CidrIp"),
            ("Ipv6Ranges", "CidrIpv6"),
            ("UserIdGroupPairs", "GroupId"),
        ):
            wanted = {entry[field] for entry in rule.get(key, [])}
            if wanted and wanted <= {entry[field] for entry in permission.get(key, [])}:
                return True
    return False


def ensure_security_group(
    ec2: Any, cidr: str, *, name: str = DEFAULT_GROUP_NAME, vpc_id: str | None = None
) -> str:
    """Creates or updates the group in `vpc_id` (default: the default VPC); returns its id.

    Args:
        ec2: A boto3 EC2 client.
        cidr: The address range SSH is let in from.
        name: The group's name.
        vpc_id: The VPC; None means the account's default VPC in the client's region.
    """
    cidr = check_cidr(cidr)
    if vpc_id is None:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise ValueError("No default VPC in this region: pass --vpc-id.")
        vpc_id = vpcs[0]["VpcId"]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    if groups:
        group_id = groups[0]["GroupId"]
        permissions = groups[0].get("IpPermissions", [])
    else:
        group_id = ec2.create_security_group(
            GroupName=name,
            Description="Ray cluster of drive-rllib: SSH from one range, all traffic within the group",
            VpcId=vpc_id,
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": [{"Key": "ray-cluster-name", "Value": "drive-rllib"}],
                }
            ],
        )["GroupId"]
        permissions = []
    stale = stale_rules(permissions, cidr)
    if stale:
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=stale)
    missing = [
        rule
        for rule in (ssh_rule(cidr), intra_cluster_rule(group_id))
        if not has_rule(permissions, rule)
    ]
    if missing:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=missing)
    return group_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cidr", required=True, help="address range SSH is let in from, e.g. 203.0.113.7/32"
    )
    parser.add_argument("--region", default="us-west-2", help="the region of cluster/aws.yaml")
    parser.add_argument("--vpc-id", default=None, help="default: the region's default VPC")
    parser.add_argument("--name", default=DEFAULT_GROUP_NAME, help="the group's name")
    args = parser.parse_args(argv)

    import boto3

    ec2 = boto3.client("ec2", region_name=args.region)
    print(ensure_security_group(ec2, args.cidr, name=args.name, vpc_id=args.vpc_id))


if __name__ == "__main__":
    main()
