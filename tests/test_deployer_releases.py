"""The releases an instance keeps: switching back to one (`activate`), reading them, and
pruning that never removes the release serving or the one to switch back to.

Each instance is a `LocalHost`: a folder on this machine standing in for the SSH
connection. Its commands really run (bash, ln, mv, tar, readlink, ls, rm), with the
instance's /opt, /etc/systemd/system, /var/log and /tmp mapped into the folder; `sudo`
runs the command as is, `systemctl` is recorded (a restart fails when told to), and the
local health wait (the `sudo python3 -c` probe) answers as told, without an app."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from harness import make_spec

from hivemind.deployer.access import Instance
from hivemind.deployer.release import Deployer, DeployFailed, Release
from hivemind.errors import BadInputError
from hivemind.records import InstanceRelease

_MAPPED = ("/opt/", "/etc/systemd/system", "/var/log/", "/tmp/hivemind-")
# sudo and chown record what they are asked (the users they name exist on an instance,
# not on this machine); sudo then runs the command as is.
_SUDO = """#!/bin/sh
echo "$*" >> "$HOST_ROOT/sudo.log"
while [ $# -gt 0 ]; do
    case "$1" in -u) shift 2 ;; -H) shift ;; *) break ;; esac
done
exec "$@"
"""
_CHOWN = """#!/bin/sh
echo "$*" >> "$HOST_ROOT/chown.log"
"""
_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$HOST_ROOT/systemctl.log"
if [ "$1" = restart ] && [ -e "$HOST_ROOT/restart-fails" ]; then
    echo "Job for $2.service failed because the control process exited with error code." >&2
    exit 1
fi
"""


class _Done:
    def __init__(self, exited: int, stdout: str, stderr: str) -> None:
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class LocalHost:
    """One instance, as the Deployer's connection to it."""

    def __init__(self, root: Path, instance: Instance) -> None:
        self.root = root
        self.instance = instance
        self.answers = True  # whether the app answers the local health wait
        for folder in ("opt", "etc/systemd/system", "var/log", "tmp", "bin"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        tools = (("sudo", _SUDO), ("systemctl", _SYSTEMCTL), ("journalctl", ""), ("chown", _CHOWN))
        for name, text in tools:
            tool = root / "bin" / name
            tool.write_text(text or "#!/bin/sh\n")
            tool.chmod(0o755)

    def mapped(self, text: str) -> str:
        for prefix in _MAPPED:
            text = text.replace(prefix, f"{self.root}{prefix}")
        return text

    def run(self, command: str, **_options: Any) -> _Done:
        if command.startswith("sudo python3 -c "):  # the local health wait
            if self.answers:
                return _Done(0, "", "")
            return _Done(1, "", "the app did not answer at http://x within 90 s: refused\n")
        done = subprocess.run(
            ["bash", "-c", self.mapped(command)],
            capture_output=True,
            text=True,
            env={"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "HOST_ROOT": str(self.root)},
            check=False,
        )
        unmap = str(self.root)
        return _Done(
            done.returncode, done.stdout.replace(unmap, ""), done.stderr.replace(unmap, "")
        )

    def put(self, local: str | io.BytesIO, remote: str) -> None:
        target = Path(self.mapped(remote))
        if isinstance(local, io.BytesIO):  # a script or unit: its paths are mapped too
            target.write_text(self.mapped(local.getvalue().decode()))
        else:
            shutil.copyfile(local, target)

    def close(self) -> None:
        pass

    # What the test reads on the host.
    def current(self) -> str:
        return (self.root / "opt/hivemind/shop/current").readlink().name

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.root / "opt/hivemind/shop/releases").iterdir())

    def systemctl(self) -> list[str]:
        log = self.root / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []


SPEC = make_spec(
    "production",
    "none",
    False,
    app={
        "name": "shop",
        "language": "node",
        "runtime_version": "20",
        "start_command": "node app.js",
        "port": 3000,
        "health_path": "/health",
    },
)
R1, R2, R3, R4, R5 = (f"2026110310{minute:02d}00-c0mm1t{minute}" for minute in range(1, 6))


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, LocalHost]:
    return {
        instance_id: LocalHost(
            tmp_path / instance_id, Instance(instance_id, f"10.0.1.{n}", f"10.0.1.{n}")
        )
        for n, instance_id in enumerate(("i-0aaa1111", "i-0bbb2222"), start=1)
    }


def deployer_of(tmp_path: Path, hosts: dict[str, LocalHost], spec: Any = SPEC) -> Deployer:
    return Deployer(
        spec,
        "shop-abcdefghij",
        tmp_path / "record",
        log=lambda _line: None,
        connect_to=lambda instance: hosts[instance.instance_id],
    )


@pytest.fixture
def deployer(tmp_path: Path, hosts: dict[str, LocalHost]) -> Deployer:
    return deployer_of(tmp_path, hosts)


def release(tmp_path: Path, release_id: str) -> Release:
    archive = tmp_path / f"{release_id}.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        data = f"console.log('{release_id}')\n".encode()
        member = tarfile.TarInfo("app.js")
        member.size = len(data)
        packed.addfile(member, io.BytesIO(data))
    return Release(archive, release_id, None, {})


def deploy(deployer: Deployer, tmp_path: Path, hosts: dict[str, LocalHost], *ids: str) -> None:
    instances = [host.instance for host in hosts.values()]
    for release_id in ids:
        deployer.deploy(release(tmp_path, release_id), instances)


def test_switching_back_to_a_kept_release_moves_current_and_restarts_the_app(
    tmp_path: Path, deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    deploy(deployer, tmp_path, hosts, R1, R2)
    instances = [host.instance for host in hosts.values()]
    assert deployer.releases(instances[0]) == (R2, [R1, R2])
    restarts_before = [len(host.systemctl()) for host in hosts.values()]

    results = deployer.activate(R1, instances)

    assert [r.instance_id for r in results] == list(hosts)
    for result, host, before in zip(results, hosts.values(), restarts_before, strict=True):
        assert isinstance(result, InstanceRelease)
        assert (result.release_id, result.kept_releases) == (R1, [R1, R2])
        assert set(result.seconds) == {"switch", "healthy"}
        assert host.current() == R1
        assert host.systemctl()[before:] == [
            "daemon-reload",
            "enable hivemind-shop",
            "restart hivemind-shop",
        ]
        assert host.releases() == [R1, R2]  # switching back removes nothing
    assert deployer.releases(instances[1]) == (R1, [R1, R2])


def test_switching_to_a_release_an_instance_does_not_keep_names_the_ones_it_keeps(
    tmp_path: Path, deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    deploy(deployer, tmp_path, hosts, R1, R2)
    first, second = hosts.values()
    shutil.rmtree(second.root / "opt/hivemind/shop/releases" / R1)  # e.g. pruned there
    restarts = len(second.systemctl())

    with pytest.raises(DeployFailed) as raised:
        deployer.activate(R1, [first.instance, second.instance])

    error = raised.value
    assert error.what == f"release {R1} is not kept on i-0bbb2222 (10.0.1.2)"
    assert error.cause == f"i-0bbb2222 keeps {R2} (current)"
    assert error.next_step is not None
    assert "`hivemind update shop-abcdefghij --version <ref>`" in error.next_step
    assert second.current() == R2 and "restart hivemind-shop" not in second.systemctl()[restarts:]
    # The instances are switched in parallel: the one that keeps it was switched.
    assert first.current() == R1


def test_switching_back_on_an_instance_that_never_had_a_release(
    deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    host = hosts["i-0aaa1111"]
    assert deployer.releases(host.instance) == (None, [])
    with pytest.raises(DeployFailed, match="is not kept") as raised:
        deployer.activate(R1, [host.instance])
    assert raised.value.cause == "i-0aaa1111 keeps no release"


def test_a_release_that_does_not_start_again_fails_the_switch_with_the_services_error(
    tmp_path: Path, deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    deploy(deployer, tmp_path, hosts, R1, R2)
    host = hosts["i-0aaa1111"]
    (host.root / "restart-fails").touch()
    with pytest.raises(DeployFailed) as raised:
        deployer.activate(R1, [host.instance])
    error = raised.value
    assert error.where == "activate, start on i-0aaa1111"
    assert error.cause is not None and "Job for hivemind-shop.service failed" in error.cause
    assert error.next_step is not None and "--version <ref>" in error.next_step
    assert "retry" not in error.next_step  # a switch is not resumed by retry

    (host.root / "restart-fails").unlink()
    host.answers = False
    with pytest.raises(DeployFailed, match="health check failed on i-0aaa1111"):
        deployer.activate(R1, [host.instance])


def test_a_release_id_that_is_not_one_is_refused_before_reaching_an_instance(
    deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    for bad in ("../../etc", "x; rm -rf /", "", ".hidden"):
        with pytest.raises(BadInputError, match="is not a release id"):
            deployer.activate(bad, [hosts["i-0aaa1111"].instance])
    assert hosts["i-0aaa1111"].systemctl() == []


def test_prune_keeps_the_three_newest_releases(
    tmp_path: Path, deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    deploy(deployer, tmp_path, hosts, R1, R2, R3, R4)
    for host in hosts.values():
        assert host.releases() == [R2, R3, R4]
        assert host.current() == R4


def test_prune_keeps_the_release_switched_back_to_when_the_next_one_is_deployed(
    tmp_path: Path, deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    deploy(deployer, tmp_path, hosts, R1, R2, R3)
    deployer.activate(R1, [host.instance for host in hosts.values()])
    # R1 is serving: the deploy of R4 keeps it (its switch back) beside the newest three.
    deploy(deployer, tmp_path, hosts, R4)
    host = hosts["i-0aaa1111"]
    assert host.releases() == [R1, R2, R3, R4]
    assert host.current() == R4
    assert deployer.releases(host.instance) == (R4, [R1, R2, R3, R4])
    deploy(deployer, tmp_path, hosts, R5)
    assert host.releases() == [R3, R4, R5]


def test_prune_keeps_a_release_whose_id_sorts_older_than_the_ones_kept(
    tmp_path: Path, deployer: Deployer, hosts: dict[str, LocalHost]
) -> None:
    """A release packed on a machine whose clock was behind gets an older-looking id."""
    deploy(deployer, tmp_path, hosts, R2, R3, R4)
    behind = "20261103090000-abcdef0"
    instance = hosts["i-0aaa1111"].instance
    [result] = deployer.deploy(release(tmp_path, behind), [instance])
    assert hosts["i-0aaa1111"].current() == behind
    assert hosts["i-0aaa1111"].releases() == [behind, R2, R3, R4]
    assert result.kept_releases == [behind, R2, R3, R4]


def built(tmp_path: Path, hosts: dict[str, LocalHost], build_command: str) -> Deployer:
    spec = SPEC.model_copy(
        update={"app": SPEC.app.model_copy(update={"build_command": build_command})}
    )
    return deployer_of(tmp_path, hosts, spec)


def test_the_build_runs_as_the_apps_user_in_its_folder_which_is_roots_again_after(
    tmp_path: Path, hosts: dict[str, LocalHost]
) -> None:
    # A build that leaves a file anyone could write, and a link where HiveMind writes.
    build = "echo built > out && chmod 0777 out && ln -s /etc .hivemind"
    host = hosts["i-0aaa1111"]
    built(tmp_path, hosts, build).deploy_one(release(tmp_path, R1), host.instance)

    folder = f"/opt/hivemind/shop/releases/{R1}"
    assert (host.root / folder.lstrip("/") / "out").read_text() == "built\n"
    assert (host.root / folder.lstrip("/") / "out").stat().st_mode & 0o777 == 0o755
    hivemind_dir = host.root / folder.lstrip("/") / ".hivemind"
    assert not hivemind_dir.is_symlink() and (hivemind_dir / "start.sh").is_file()
    # The folder is lent to hm-shop for the build alone, the build runs as hm-shop, and
    # the folder is root's again before anything runs from it.
    assert (host.root / "chown.log").read_text().splitlines() == [
        f"-hR hm-shop:hm-shop {host.root}{folder}",
        f"-hR root:root {host.root}{folder}",
    ]
    sudo = (host.root / "sudo.log").read_text().splitlines()
    as_user = [line for line in sudo if line.startswith("-u ")]
    assert as_user == [f"-u hm-shop -H bash -c {build}"]
    assert sudo.index(f"chown -hR hm-shop:hm-shop {host.root}{folder}") < sudo.index(as_user[0])
    assert sudo.index(as_user[0]) < sudo.index(f"chown -hR root:root {host.root}{folder}")


def test_a_failed_build_gives_the_folder_back_to_root_and_says_what_ran_as_whom(
    tmp_path: Path, hosts: dict[str, LocalHost]
) -> None:
    host = hosts["i-0aaa1111"]
    with pytest.raises(DeployFailed) as failed:
        built(tmp_path, hosts, "echo no >&2; exit 7").deploy_one(
            release(tmp_path, R1), host.instance
        )
    details = failed.value.details
    assert "exit code 7" in details and "stderr: no" in details
    assert "command: sudo -u hm-shop -H bash -c 'echo no >&2; exit 7' (in /opt/" in "\n".join(
        details
    )
    assert (host.root / "chown.log").read_text().splitlines()[-1].startswith("-hR root:root ")
    assert host.systemctl() == []  # nothing started from it
