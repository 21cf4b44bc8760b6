"""Each sandbox EC2 instance is a real SSH host: a stack with a key pair and an instance
launched from a template gets a loopback address (its private and public IP), prints
its host key to the console in cloud-init's format, and lets Fabric, with that key
pinned, log in as ec2-user with the key pair's key only; commands and SFTP reach the
host's own /opt, /tmp, /etc/systemd/system and /var/log; its systemctl runs services
bound to the host's address (Python and Node programs too that a script starts on the
wildcard, two hosts on one port), journalctl shows their output, and its aws reads secrets;
injected faults refuse connections and fail commands; deleting the stack stops every
process the host ran. One sandbox server and one host serve most tests here."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fabric import Connection
from sandbox_harness import Clients, destroy, in_process_sandbox, outputs

from hivemind.sandbox import control, hosts, runtime
from hivemind.sandbox.host_tools import ADDRESS_VARIABLE, PATH_VARIABLE, namespace, units
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox

REGION = "us-east-2"  # apart from the other sandbox tests' region
# What HiveMind's user data does for an app's user (templates/user_data.sh.j2).
USER_DATA = (
    "#!/bin/bash\nset -euo pipefail\n"
    "id hm-shop >/dev/null 2>&1 || useradd --system --user-group --create-home "
    "--home-dir /opt/hivemind/shop/home --shell /sbin/nologin hm-shop\n"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with in_process_sandbox() as server:
        yield server


@pytest.fixture(scope="module")
def aws(sandbox: SandboxServer) -> Iterator[Clients]:
    clients = Clients(sandbox.url, REGION)
    yield clients
    control.clear_faults(info_of(sandbox))
    for summary in clients.cloudformation.list_stacks()["StackSummaries"]:
        if summary["StackStatus"] != "DELETE_COMPLETE":
            destroy(clients, summary["StackId"])


def info_of(sandbox: SandboxServer) -> control.SandboxInfo:
    return control.SandboxInfo(sandbox.url, 0, sandbox.port)


def new_key(folder: Path, name: str) -> tuple[Path, str]:
    """An ed25519 key pair: the private key's file and the public key (OpenSSH)."""
    key = Ed25519PrivateKey.generate()
    private = folder / name
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


def template(
    public_key: str, *, unkeyed_instance: bool = False, user_data: str = USER_DATA
) -> dict[str, Any]:
    """A VPC with a public subnet, a key pair imported from `public_key`, a launch
    template naming it (as CDK's LaunchTemplate(key_pair=...) does) and an instance
    launched from it; optionally a second instance without any key pair."""
    resources: dict[str, Any] = {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.8.0.0/16"}},
        "Public": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {
                "VpcId": {"Ref": "Vpc"},
                "CidrBlock": "10.8.0.0/24",
                "MapPublicIpOnLaunch": True,
            },
        },
        "KeyPair": {
            "Type": "AWS::EC2::KeyPair",
            "Properties": {
                "KeyName": f"deploy-{secrets.token_hex(4)}",
                "KeyType": "ed25519",
                "PublicKeyMaterial": public_key,
            },
        },
        "LaunchTemplate": {
            "Type": "AWS::EC2::LaunchTemplate",
            "Properties": {
                "LaunchTemplateData": {
                    "ImageId": "ami-0abcdef1234567890",
                    "InstanceType": "t3.micro",
                    "KeyName": {"Ref": "KeyPair"},
                    "UserData": {"Fn::Base64": user_data},
                }
            },
        },
        "App": {
            "Type": "AWS::EC2::Instance",
            "Properties": {
                "SubnetId": {"Ref": "Public"},
                "LaunchTemplate": {
                    "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                    "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
                },
            },
        },
    }
    result: dict[str, Any] = {
        "Resources": resources,
        "Outputs": {
            "InstanceId": {"Value": {"Ref": "App"}},
            "PrivateIp": {"Value": {"Fn::GetAtt": ["App", "PrivateIp"]}},
            "PublicIp": {"Value": {"Fn::GetAtt": ["App", "PublicIp"]}},
            "KeyPairId": {"Value": {"Fn::GetAtt": ["KeyPair", "KeyPairId"]}},
        },
    }
    if unkeyed_instance:
        resources["Unkeyed"] = {
            "Type": "AWS::EC2::Instance",
            "Properties": {"SubnetId": {"Ref": "Public"}, "ImageId": "ami-0abcdef1234567890"},
        }
        result["Outputs"]["Unkeyed"] = {"Value": {"Ref": "Unkeyed"}}
    return result


@dataclass(frozen=True)
class Box:
    """A stack's instance as the Deployer sees it."""

    stack_id: str
    instance_id: str
    address: str
    key_file: Path
    values: dict[str, str]

    @property
    def host(self) -> hosts.SandboxHost:
        found = hosts.host_of(self.instance_id)
        assert found is not None
        return found


def deploy(aws: Clients, name: str, body: dict[str, Any], key_file: Path) -> Box:
    stack_id = aws.cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(body))[
        "StackId"
    ]
    values = outputs(aws, stack_id)
    assert values, aws.cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    return Box(stack_id, values["InstanceId"], values["PrivateIp"], key_file, values)


def console_host_key(aws: Clients, instance_id: str) -> str:
    """`ssh-ed25519 AAAA...` from the instance's console output."""
    text = aws.ec2.get_console_output(InstanceId=instance_id, Latest=True)["Output"]
    block = text.split("-----BEGIN SSH HOST KEY KEYS-----\n", 1)[1].split("\n-----END", 1)[0]
    key_type, key, _comment = block.split()
    return f"{key_type} {key}"


def known_hosts(folder: Path, address: str, host_key: str) -> Path:
    path = folder / f"known_hosts-{secrets.token_hex(3)}"
    path.write_text(f"[{address}]:{hosts.SSH_PORT} {host_key}\n")
    return path


def connect(box: Box, pinned: Path, *, key_file: Path | None = None, user: str = "ec2-user") -> Any:
    """A Fabric connection that accepts only the pinned host key (Fabric's default would
    accept any)."""
    connection = Connection(
        box.address,
        user=user,
        port=hosts.SSH_PORT,
        connect_timeout=10,
        connect_kwargs={
            "key_filename": str(key_file or box.key_file),
            "look_for_keys": False,
            "allow_agent": False,
            "banner_timeout": 10,
        },
    )
    connection.client.load_host_keys(str(pinned))
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    connection.open()
    return connection


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def box(aws: Clients, keys: Path) -> Box:
    key_file, public_key = new_key(keys, "id_ed25519")
    return deploy(aws, "web", template(public_key), key_file)


@pytest.fixture(scope="module")
def pinned(aws: Clients, box: Box, keys: Path) -> Path:
    return known_hosts(keys, box.address, console_host_key(aws, box.instance_id))


@pytest.fixture(scope="module")
def ssh(box: Box, pinned: Path) -> Iterator[Any]:
    connection = connect(box, pinned)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def twin(aws: Clients, keys: Path) -> Box:
    """A second instance, in a stack of its own: `box`'s neighbour on this machine."""
    key_file, public_key = new_key(keys, "id_twin")
    return deploy(aws, "twin", template(public_key), key_file)


@pytest.fixture(scope="module")
def twin_ssh(aws: Clients, twin: Box, keys: Path) -> Iterator[Any]:
    connection = connect(
        twin, known_hosts(keys, twin.address, console_host_key(aws, twin.instance_id))
    )
    yield connection
    connection.close()


def run(connection: Any, command: str) -> Any:
    return connection.run(command, hide=True, warn=True, in_stream=False)


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def answers(url: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def port_closed(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) != 0


# ---------------------------------------------------------------------------


def test_the_instance_has_one_loopback_address_as_private_and_public_ip(
    aws: Clients, box: Box
) -> None:
    described = aws.ec2.describe_instances(InstanceIds=[box.instance_id])
    instance = described["Reservations"][0]["Instances"][0]
    address = box.address
    assert address.startswith("127.") and address.endswith(".1")
    assert instance["PrivateIpAddress"] == address
    assert instance["PublicIpAddress"] == address
    assert box.values["PublicIp"] == address
    assert instance["NetworkInterfaces"][0]["PrivateIpAddress"] == address
    assert instance["PrivateDnsName"].startswith(hosts.hostname_of(address))
    assert instance["KeyName"].startswith("deploy-")  # from the launch template
    assert box.values["KeyPairId"].startswith("key-")
    assert not port_closed(address, hosts.SSH_PORT)


def test_the_console_prints_the_host_key_as_cloud_init_does(aws: Clients, box: Box) -> None:
    text = aws.ec2.get_console_output(InstanceId=box.instance_id)["Output"]
    public_key = (box.host.directory / "ssh_host_ed25519_key.pub").read_text().split()
    blob = base64.b64decode(public_key[1])
    fingerprint = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    user = f"root@{hosts.hostname_of(box.address)}"

    assert (
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
        f"256 SHA256:{fingerprint} {user} (ED25519)\n"
        "-----END SSH HOST KEY FINGERPRINTS-----\n"
    ) in text
    assert (
        "-----BEGIN SSH HOST KEY KEYS-----\n"
        f"ssh-ed25519 {public_key[1]} {user}\n"
        "-----END SSH HOST KEY KEYS-----\n"
    ) in text
    # The host's folder holds its key, under the daemon's state folder.
    assert box.host.directory == runtime.state_dir() / "hosts" / box.instance_id


def test_commands_run_as_ec2_user_over_the_pinned_key(ssh: Any, box: Box) -> None:
    assert run(ssh, "echo hi").stdout == "hi\n"
    failed = run(ssh, "echo oops >&2; exit 3")
    assert (failed.exited, failed.stderr) == (3, "oops\n")

    folder = f"app-{secrets.token_hex(3)}"
    listed = run(ssh, f"sudo install -d /opt/{folder} && ls /opt")
    assert listed.exited == 0 and folder in listed.stdout.split()
    assert (box.host.root / "opt" / folder).is_dir()
    assert not Path("/opt", folder).exists()  # not the machine's /opt

    env = run(ssh, "echo $HOME $USER; command -v sudo systemctl journalctl aws python3")
    home_user, *found = env.stdout.split()
    assert home_user == "/opt" and found[0] == "ec2-user"
    tools = [str(box.host.bin_dir / tool) for tool in ("sudo", "systemctl", "journalctl", "aws")]
    assert found[1:5] == tools
    assert Path(found[5]).parent == Path(sys.executable).parent  # the virtualenv's python3


def test_a_hosts_commands_are_never_this_machines_root(ssh: Any, box: Box) -> None:
    """What a repository's build runs on a host cannot act as the operator: as root, the
    sandbox gives the host's commands `nobody` (root only inside the host); otherwise
    they are the daemon's own unprivileged user."""
    made = f"/opt/made-{secrets.token_hex(3)}"
    assert run(ssh, f"sudo touch {made} && id -u").stdout == "0\n"  # root inside the host
    outside = (box.host.root / made.removeprefix("/")).stat()
    if os.geteuid() != 0:
        assert outside.st_uid == os.geteuid()
        return
    nobody = pwd.getpwnam("nobody")
    assert (outside.st_uid, outside.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    # Its processes, seen from this machine: every id is nobody's, no group of root's.
    answer = run(ssh, "sleep 30 >/dev/null 2>&1 & echo $!").stdout.strip()
    status = Path(f"/proc/{answer}/status").read_text().splitlines()
    ids = {line.split(":")[0]: line.split()[1:] for line in status if ":" in line}
    assert set(ids["Uid"]) == {str(nobody.pw_uid)} and set(ids["Gid"]) == {str(nobody.pw_gid)}
    assert "0" not in ids["Groups"]
    run(ssh, f"kill {answer}")

    # A root-only folder of this machine (as /root holds the operator's ~/.aws): its
    # files cannot be read, and root's files cannot be written.
    # (Not under /tmp: inside the host, /tmp is the host's own.)
    outside_tmp = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        outside_tmp.chmod(0o755)  # passable: what is refused below is refused for itself
        private = outside_tmp / "private"
        private.mkdir(mode=0o700)
        (private / "credentials").write_text("aws_secret_access_key = not-for-the-app\n")
        refused = run(ssh, f"cat {private}/credentials")
        assert refused.exited != 0 and "not-for-the-app" not in refused.stdout
        shared = outside_tmp / "root-owned"
        shared.mkdir(mode=0o755)
        tampered = run(ssh, f"echo x > {shared}/marker")
        assert tampered.exited != 0 and not (shared / "marker").exists()
        assert "Permission denied" in tampered.stderr
    finally:
        shutil.rmtree(outside_tmp)
    # The folder above this Python, closed to nobody (pyenv's under /root, say), stays
    # passable for the paths the host needs only.
    python = run(ssh, "python3 -c 'import sys; print(sys.version_info[0])'")
    assert (python.exited, python.stdout) == (0, "3\n")
    # SFTP writes as the host's user too.
    ssh.put(io.StringIO("from sftp\n"), "/tmp/sftp-owned")
    assert (box.host.root / "tmp" / "sftp-owned").stat().st_uid == nobody.pw_uid


def test_sudo_and_chown_know_the_users_the_user_data_creates_and_no_other(
    ssh: Any, box: Box
) -> None:
    # hm-shop: created by the launch template's user data (useradd), as on an instance.
    assert (box.host.directory / "users").read_text().split() == ["root", "ec2-user", "hm-shop"]
    as_app = run(ssh, "cd /tmp && sudo -u hm-shop -H bash -c 'echo built'")
    assert (as_app.exited, as_app.stdout) == (0, "built\n")
    unknown = run(ssh, "sudo -u nobody-here true")
    assert (unknown.exited, unknown.stderr) == (1, "sudo: unknown user nobody-here\n")
    # sudo's log says who each command ran as, as Amazon Linux's sudo logs it.
    logged = (box.host.directory / "sudo.log").read_text().splitlines()
    assert "ec2-user : PWD=/tmp ; USER=hm-shop ; COMMAND=bash -c 'echo built'" in logged
    assert not any("nobody-here" in line for line in logged)

    folder = f"/opt/own-{secrets.token_hex(3)}"
    assert run(ssh, f"sudo install -d {folder}/sub").exited == 0
    assert run(ssh, f"sudo chown -hR hm-shop:hm-shop {folder}").exited == 0
    assert run(ssh, f"sudo chown -hR root:root {folder}/sub").exited == 0
    refusals = {
        f"sudo chown -R nobody-here {folder}": "chown: invalid user: 'nobody-here'",
        f"sudo chown hm-shop:no-group {folder}": "chown: invalid group: 'hm-shop:no-group'",
        "sudo chown root /opt/not-there": (
            "chown: cannot access '/opt/not-there': No such file or directory"
        ),
        # Not root (no sudo): only one's own files to oneself.
        f"chown root:root {folder}": (
            f"chown: changing ownership of '{folder}': Operation not permitted"
        ),
    }
    for command, message in refusals.items():
        refused = run(ssh, command)
        assert (refused.exited, refused.stderr) == (1, message + "\n"), command
    assert run(ssh, f"chown ec2-user {folder}").exited == 0


def test_user_data_stops_at_a_package_al2023_lacks_and_nothing_after_it_happens(
    aws: Clients, keys: Path
) -> None:
    # With set -e, dnf's failure ends the user data: the app's user is never created.
    # (nodejs18 is what HiveMind once asked for: AL2023's Node 18 is `nodejs`.)
    failing = USER_DATA.replace(
        "set -euo pipefail\n",
        "set -euo pipefail\ndnf install -y --setopt=install_weak_deps=False nodejs18 "
        "nodejs18-npm git amazon-cloudwatch-agent\n",
    )
    key_file, public_key = new_key(keys, "id_failing")
    failed = deploy(aws, "bad-packages", template(public_key, user_data=failing), key_file)
    try:
        assert (failed.host.directory / "users").read_text().split() == ["root", "ec2-user"]
        log = (failed.host.root / "var/log/hivemind-user-data.log").read_text()
        assert log.splitlines() == [
            "No match for argument: nodejs18",
            "No match for argument: nodejs18-npm",
            "Error: Unable to find a match: nodejs18 nodejs18-npm",
        ]
        cloud_init = (failed.host.root / "var/log/cloud-init-output.log").read_text()
        assert "Failed running /var/lib/cloud/instance/scripts/part-001 [1]" in cloud_init
    finally:
        destroy(aws, failed.stack_id)

    # The same user data with AL2023's names runs to its end.
    fixed = failing.replace("nodejs18 nodejs18-npm", "nodejs nodejs-npm")
    key_file, public_key = new_key(keys, "id_fixed")
    ran = deploy(aws, "good-packages", template(public_key, user_data=fixed), key_file)
    try:
        assert (ran.host.directory / "users").read_text().split() == [
            "root",
            "ec2-user",
            "hm-shop",
        ]
        assert not (ran.host.root / "var/log/hivemind-user-data.log").exists()
    finally:
        destroy(aws, ran.stack_id)


def test_a_service_runs_as_a_user_the_instance_has_and_fails_for_another(ssh: Any) -> None:
    for name, user in (("as-app", "hm-shop"), ("as-nobody", "nobody-here")):
        unit = f"[Service]\nUser={user}\nExecStart=/bin/sh -c 'echo running; sleep 30'\n"
        ssh.put(io.StringIO(unit), f"/etc/systemd/system/{name}.service")
    assert run(ssh, "sudo systemctl start as-app").exited == 0
    assert run(ssh, "systemctl is-active as-app").stdout == "active\n"
    assert run(ssh, "sudo systemctl stop as-app").exited == 0
    failed = run(ssh, "sudo systemctl start as-nobody")
    assert failed.exited == 1 and 'See "systemctl status as-nobody.service"' in failed.stderr
    journal = run(ssh, "journalctl -u as-nobody -o cat --no-pager").stdout.splitlines()
    assert "as-nobody.service: Failed to determine user credentials: No such process" in journal
    assert "as-nobody.service: Main process exited, code=exited, status=217/USER" in journal


def test_stdin_reaches_the_command_and_its_eof_ends_it(ssh: Any) -> None:
    stdin, stdout, _ = ssh.client.exec_command("cat > /tmp/upload && wc -c < /tmp/upload")
    stdin.write(b"x" * 100_000)
    stdin.channel.shutdown_write()
    assert stdout.read().strip() == b"100000"
    assert stdout.channel.recv_exit_status() == 0


def test_sftp_reaches_the_hosts_folders_and_nothing_else(
    ssh: Any, box: Box, tmp_path: Path
) -> None:
    local = tmp_path / "release.tgz"
    local.write_bytes(os.urandom(4096))
    assert (
        run(
            ssh,
            "sudo mkdir -p /opt/shop/releases/1 && ln -sfn /opt/shop/releases/1 /opt/shop/current",
        ).exited
        == 0
    )

    ssh.put(str(local), "/opt/shop/current/release.tgz")  # through the host's own link
    landed = box.host.root / "opt" / "shop" / "releases" / "1" / "release.tgz"
    assert landed.read_bytes() == local.read_bytes()
    assert run(ssh, "sha256sum < /opt/shop/releases/1/release.tgz").stdout.split()[0] == (
        hashlib.sha256(local.read_bytes()).hexdigest()
    )
    back = tmp_path / "back"
    ssh.get("/opt/shop/current/release.tgz", str(back))
    assert back.read_bytes() == local.read_bytes()
    sftp = ssh.sftp()
    assert sftp.normalize(".") == "/opt"
    assert "shop" in sftp.listdir("/opt")
    for outside in ("/root/x", "/etc/passwd", "/opt/../etc/shadow"):
        with pytest.raises(PermissionError):
            sftp.put(str(local), outside)


def test_another_key_or_user_is_refused(box: Box, pinned: Path, keys: Path) -> None:
    stranger, _ = new_key(keys, "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        connect(box, pinned, key_file=stranger)
    with pytest.raises(paramiko.AuthenticationException):
        connect(box, pinned, user="root")


def test_a_host_key_other_than_the_pinned_one_is_rejected(box: Box, keys: Path) -> None:
    _, other = new_key(keys, "impostor")
    wrong = known_hosts(keys, box.address, " ".join(other.split()[:2]))
    with pytest.raises(paramiko.BadHostKeyException):
        connect(box, wrong)


def test_a_service_binds_the_hosts_address_and_logs_to_its_journal(ssh: Any, box: Box) -> None:
    port = free_port(box.address)
    unit = (
        "[Unit]\nDescription=Shop web\n\n[Service]\n"
        f"Environment=PORT={port}\n"
        "WorkingDirectory=/opt/shop/site\n"
        "ExecStart=/usr/bin/env python3 -u -m http.server ${PORT} --bind 0.0.0.0\n"
        "Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    ssh.put(io.StringIO(unit), "/etc/systemd/system/shop.service")
    assert (
        run(
            ssh,
            "sudo mkdir -p /opt/shop/site && echo hello | sudo tee "
            "/opt/shop/site/index.html >/dev/null",
        ).exited
        == 0
    )
    started = run(ssh, "sudo systemctl daemon-reload && sudo systemctl enable --now shop")
    assert started.exited == 0, started.stderr
    assert (box.host.root / "etc/systemd/system/multi-user.target.wants/shop.service").is_symlink()

    assert answers(f"http://{box.address}:{port}/index.html") == b"hello\n"
    assert run(ssh, "systemctl is-active shop").stdout == "active\n"
    pid = int(run(ssh, "systemctl show -p MainPID --value shop").stdout)
    assert namespace.namespace_of(pid) == box.host.mount_namespace
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert box.address.encode() in command_line and b"0.0.0.0" not in command_line
    assert f"HOST={box.address}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    log = run(ssh, "journalctl -u shop -n 20 --no-pager -o cat").stdout
    assert '"GET /index.html HTTP/1.1" 200' in log
    status = run(ssh, "systemctl status shop")
    assert (status.exited, f"Main PID: {pid} (python3)") == (
        0,
        status.stdout.split("\n")[3].strip(),
    )

    stopped = run(ssh, "sudo systemctl stop shop")
    assert stopped.exited == 0
    inactive = run(ssh, "systemctl is-active shop")
    assert (inactive.exited, inactive.stdout) == (3, "inactive\n")
    assert not units.alive(pid)
    assert port_closed(box.address, port)
    assert "Stopped Shop web." in run(ssh, "journalctl -u shop -o cat").stdout


def start_from_a_script(connection: Any, box: Box, app: str, program: str) -> None:
    """Start `app` the way a deploy does: a unit whose ExecStart runs a bash script that
    execs `program` in /opt/<app>/site, a folder holding host.txt, which names the host."""
    site = f"/opt/{app}/site"
    made = run(connection, f"sudo mkdir -p {site} && echo {box.instance_id} > {site}/host.txt")
    assert made.exited == 0, made.stderr
    script = f"#!/bin/bash\ncd {site}\nexec {program}\n"
    connection.put(io.StringIO(script), f"/opt/{app}/start.sh")
    unit = f"[Unit]\nDescription={app}\n[Service]\nExecStart=/bin/bash /opt/{app}/start.sh\n"
    connection.put(io.StringIO(unit), f"/etc/systemd/system/{app}.service")
    started = run(connection, f"sudo systemctl start {app}")
    assert started.exited == 0, started.stderr


def host_page(box: Box, port: int) -> str:
    """What `box`'s address answers at `port` for host.txt."""
    return answers(f"http://{box.address}:{port}/host.txt").decode().strip()


def assert_each_host_answers_for_itself(
    hosts_: list[tuple[Any, Box]], app: str, program: str, port: int
) -> None:
    """Start `app` on each host in turn, each once the one before answers; then each
    host's address answers with its own host.txt, and every service is still active."""
    try:
        for connection, box in hosts_:
            start_from_a_script(connection, box, app, program)
            assert host_page(box, port) == box.instance_id
        for connection, box in hosts_:
            assert host_page(box, port) == box.instance_id
            assert run(connection, f"systemctl is-active {app}").stdout == "active\n"
            pid = int(run(connection, f"systemctl show -p MainPID --value {app}").stdout)
            # No rewrite of the command line reached the program: the hook did it.
            assert box.address.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        for connection, _box in hosts_:
            run(connection, f"sudo systemctl stop {app}")
    for _connection, box in hosts_:
        assert port_closed(box.address, port)


def test_two_hosts_serve_python_on_one_port_though_a_script_binds_the_wildcard(
    ssh: Any, box: Box, twin_ssh: Any, twin: Box
) -> None:
    port = free_port("0.0.0.0")
    program = f"python3 -u -m http.server --bind 0.0.0.0 {port}"
    assert_each_host_answers_for_itself([(ssh, box), (twin_ssh, twin)], "pages", program, port)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_two_hosts_serve_node_on_one_port_though_it_listens_on_no_host(
    ssh: Any, box: Box, twin_ssh: Any, twin: Box
) -> None:
    port = free_port("0.0.0.0")
    server = (
        'const fs = require("fs"); require("http")'
        '.createServer((request, response) => response.end(fs.readFileSync("host.txt")))'
        f".listen({port})"
    )
    program = f"node -e '{server}'"
    assert_each_host_answers_for_itself([(ssh, box), (twin_ssh, twin)], "nodepages", program, port)


HOOK_ADDRESS = "127.0.0.9"  # any loopback address binds


def on_a_host(unit: units.Unit) -> dict[str, str]:
    """`unit`'s environment on a host at HOOK_ADDRESS, this machine's PATH its PATH."""
    return units.service_environment(
        unit, {ADDRESS_VARIABLE: HOOK_ADDRESS, PATH_VARIABLE: os.environ["PATH"]}
    )


def test_services_get_the_start_up_hooks_before_their_own_path_and_after_their_options(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("NODE_OPTIONS=--max-old-space-size=256\n")
    unit = units.Unit(
        name="app.service",
        path=tmp_path / "app.service",
        description="app",
        exec_start=("/bin/true",),
        environment=("PYTHONPATH=/opt/app/lib",),
        environment_files=(str(env_file),),
    )
    hooks, require = str(units.START_UP_HOOKS), f'--require "{units.NODE_HOOK}"'
    assert (units.START_UP_HOOKS / "sitecustomize.py").is_file() and units.NODE_HOOK.is_file()

    env = on_a_host(unit)
    assert env["PYTHONPATH"] == f"{hooks}{os.pathsep}/opt/app/lib"
    assert env["NODE_OPTIONS"] == f"--max-old-space-size=256 {require}"
    assert env["HOST"] == HOOK_ADDRESS

    bare = on_a_host(replace(unit, environment=(), environment_files=()))
    assert (bare["PYTHONPATH"], bare["NODE_OPTIONS"]) == (hooks, require)

    # Without an address (not on a host) a service keeps what it set, and no more.
    off_host = units.service_environment(unit, {})
    assert off_host["PYTHONPATH"] == "/opt/app/lib"
    assert off_host["NODE_OPTIONS"] == "--max-old-space-size=256"
    assert "HOST" not in off_host


PYTHON_BINDS = """
import socket

def free_port():
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]

def bound(family, host, port=None, v6only=None):
    with socket.socket(family) as server:
        if v6only is not None:
            server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        server.bind((host, free_port() if port is None else port))
        print(server.getsockname()[0])

bound(socket.AF_INET, "0.0.0.0")
bound(socket.AF_INET, "")
bound(socket.AF_INET, "127.0.0.1")
bound(socket.AF_INET, "0.0.0.0", port=0)
try:
    socket.socket(socket.AF_INET6).close()
except OSError:
    print("no IPv6")
else:
    bound(socket.AF_INET6, "::", v6only=0)
    bound(socket.AF_INET6, "::", v6only=1)
"""


def test_a_services_python_binds_the_hosts_address_and_still_runs_its_own_sitecustomize(
    tmp_path: Path,
) -> None:
    own = tmp_path / "lib"
    own.mkdir()
    (own / "sitecustomize.py").write_text('print("the app\'s own sitecustomize ran")\n')
    unit = units.Unit(
        name="binds.service",
        path=tmp_path / "binds.service",
        description="binds",
        exec_start=("/bin/true",),
        environment=(f"PYTHONPATH={own}",),
    )
    result = subprocess.run(
        [sys.executable, "-c", PYTHON_BINDS],
        env=on_a_host(unit),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "the app's own sitecustomize ran",
        HOOK_ADDRESS,
        HOOK_ADDRESS,
        "127.0.0.1",  # an address of its own is left alone
        "0.0.0.0",  # so is port 0: a client's source, or any free port
    ]
    # A dual-stack socket on :: would take the port on every IPv4 address; IPv6-only not.
    assert lines[5:] in (["no IPv6"], [f"::ffff:{HOOK_ADDRESS}", "::"])


NODE_LISTENS = """
const net = require("net");
const forms = [
  (server, ready) => server.listen(0, ready),
  (server, ready) => server.listen(0, "::", 511, ready),
  (server, ready) => server.listen({ port: 0, host: "0.0.0.0" }, ready),
  (server, ready) => server.listen(ready),
  (server, ready) => server.listen(0, "127.0.0.1", ready),
];
(async () => {
  for (const form of forms) {
    const server = net.createServer();
    await new Promise((ready) => form(server, ready));
    console.log(server.address().address);
    await new Promise((closed) => server.close(closed));
  }
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_a_services_node_listens_on_the_hosts_address(tmp_path: Path) -> None:
    unit = units.Unit(
        name="listens.service",
        path=tmp_path / "listens.service",
        description="listens",
        exec_start=("/bin/true",),
    )
    result = subprocess.run(
        ["node", "-e", NODE_LISTENS],
        env=on_a_host(unit),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [HOOK_ADDRESS] * 4 + ["127.0.0.1"]


def test_a_crashing_service_is_restarted_then_fails_and_says_why(ssh: Any) -> None:
    crashing = (
        "[Unit]\nDescription=Crashing worker\n[Service]\n"
        "EnvironmentFile=-/opt/shop/missing.env\nEnvironmentFile=/opt/shop/worker.env\n"
        "ExecStart=/bin/sh -c 'echo boom $GREETING; exit 3'\n"
        "Restart=on-failure\nRestartSec=10ms\nStartLimitBurst=2\n"
    )
    ssh.put(io.StringIO(crashing), "/etc/systemd/system/worker.service")
    ssh.put(io.StringIO('# the worker\nGREETING="from the env file"\n'), "/opt/shop/worker.env")
    assert run(ssh, "sudo systemctl start worker").exited == 0  # started, then it crashes
    deadline = time.monotonic() + 10
    while run(ssh, "systemctl is-failed worker").exited != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = run(ssh, "journalctl -u worker -o cat").stdout.splitlines()
    assert log.count("boom from the env file") == 3  # the first run and two restarts
    assert "worker.service: Main process exited, code=exited, status=3/NOTIMPLEMENTED" in log
    assert "worker.service: Start request repeated too quickly." in log
    status = run(ssh, "systemctl status worker")
    assert status.exited == 3
    assert "Active: failed (Result: start-limit-hit)" in status.stdout

    missing = "[Service]\nExecStart=/opt/shop/bin/not-there --port 1\n"
    ssh.put(io.StringIO(missing), "/etc/systemd/system/broken.service")
    failed = run(ssh, "sudo systemctl start broken")
    assert failed.exited == 1
    assert 'See "systemctl status broken.service"' in failed.stderr
    assert (
        "Failed to locate executable /opt/shop/bin/not-there"
        in run(ssh, "journalctl -u broken --no-pager").stdout
    )
    unknown = run(ssh, "sudo systemctl start nothing-here")
    assert (unknown.exited, unknown.stderr) == (
        5,
        "Failed to start nothing-here.service: Unit nothing-here.service not found.\n",
    )


def test_aws_reads_a_secret_with_the_instances_stand_in_credentials(aws: Clients, ssh: Any) -> None:
    name = f"shop/db-{secrets.token_hex(3)}"
    aws.secretsmanager.create_secret(Name=name, SecretString='{"password": "s3cret"}')
    read = run(
        ssh,
        f"aws secretsmanager get-secret-value --secret-id {name} --region {REGION} "
        "--query SecretString --output text",
    )
    assert (read.exited, read.stdout) == (0, '{"password": "s3cret"}\n')
    other = run(ssh, "aws s3 ls")
    assert other.exited == 2
    assert "the sandbox's aws stand-in supports only: aws secretsmanager" in other.stderr


def test_injected_faults_refuse_a_connection_and_fail_a_command(
    sandbox: SandboxServer, ssh: Any, box: Box, pinned: Path
) -> None:
    info = info_of(sandbox)
    control.add_fault(info, "Sandbox::SSH", on="connect")
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        connect(box, pinned)
    connect(box, pinned).close()  # the fault fired once

    message = "Fault injected by the HiveMind sandbox: the build fails"
    control.add_fault(info, "Sandbox::Command", on="command", match="npm ci", message=message)
    failed = run(ssh, "cd /opt/shop && npm ci")
    assert (failed.exited, failed.stdout, failed.stderr) == (1, "", message + "\n")
    assert run(ssh, "echo still fine").stdout == "still fine\n"


def test_deleting_the_stack_stops_everything_the_host_ran(
    aws: Clients, keys: Path, tmp_path: Path
) -> None:
    key_file, public_key = new_key(keys, "id_doomed")
    doomed = deploy(aws, "doomed", template(public_key, unkeyed_instance=True), key_file)
    host = doomed.host
    pinned = known_hosts(tmp_path, doomed.address, console_host_key(aws, doomed.instance_id))
    connection = connect(doomed, pinned)
    unit = "[Service]\nExecStart=/usr/bin/env sleep 1000\n"
    connection.put(io.StringIO(unit), "/etc/systemd/system/sleeper.service")
    assert run(connection, "sudo systemctl start sleeper").exited == 0
    assert run(connection, "nohup sleep 1001 >/dev/null 2>&1 &").exited == 0
    connection.close()
    assert host.mount_namespace is not None
    running = namespace.processes_in(host.mount_namespace)
    assert len(running) >= 4  # the namespace's holder, the supervisor and both sleeps

    # An instance without a key pair takes no login at all.
    unkeyed_id = doomed.values["Unkeyed"]
    described = aws.ec2.describe_instances(InstanceIds=[unkeyed_id, doomed.instance_id])
    by_id = {i["InstanceId"]: i for r in described["Reservations"] for i in r["Instances"]}
    unkeyed = Box(doomed.stack_id, unkeyed_id, by_id[unkeyed_id]["PrivateIpAddress"], key_file, {})
    assert "KeyName" not in by_id[unkeyed_id]
    with pytest.raises(paramiko.AuthenticationException):
        connect(unkeyed, known_hosts(tmp_path, unkeyed.address, console_host_key(aws, unkeyed_id)))

    assert destroy(aws, doomed.stack_id) == "DELETE_COMPLETE"

    assert not [pid for pid in running if units.alive(pid)]
    assert namespace.processes_in(host.mount_namespace) == []
    for address in (doomed.address, unkeyed.address):
        assert port_closed(address, hosts.SSH_PORT)
    assert not host.directory.exists()
    assert hosts.host_of(doomed.instance_id) is None
    assert hosts.host_of(unkeyed_id) is None
    remaining = [pair["KeyName"] for pair in aws.ec2.describe_key_pairs()["KeyPairs"]]
    assert by_id[doomed.instance_id]["KeyName"] not in remaining


def test_the_product_is_told_the_hosts_ssh_port(sandbox: SandboxServer) -> None:
    environment = control.environment(info_of(sandbox))
    assert environment["HIVEMIND_SSH_PORT"] == str(hosts.SSH_PORT) == "2222"


def test_sandbox_down_stops_every_host_and_what_it_ran(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key_file, public_key = new_key(tmp_path, "id_daemon")
    info = control.up(home)
    try:
        clients = Clients.of(info, REGION)
        deployed = deploy(clients, "daemon", template(public_key), key_file)
        pinned = known_hosts(
            tmp_path, deployed.address, console_host_key(clients, deployed.instance_id)
        )
        connection = connect(deployed, pinned)
        unit = "[Service]\nExecStart=/usr/bin/env sleep 1002\n"
        connection.put(io.StringIO(unit), "/etc/systemd/system/sleeper.service")
        assert run(connection, "sudo systemctl start sleeper").exited == 0
        pid = int(run(connection, "systemctl show -p MainPID --value sleeper").stdout)
        connection.close()
        folder = control.state_dir(home) / "run" / "hosts" / deployed.instance_id
        assert folder.is_dir()
    finally:
        assert control.down(home)

    assert not units.alive(pid)
    assert port_closed(deployed.address, hosts.SSH_PORT)
    assert not folder.exists()
