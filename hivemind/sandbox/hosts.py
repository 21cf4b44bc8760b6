"""Each EC2 instance of the sandbox as a real SSH host on this machine.

When the sandbox's CloudFormation engine creates an `AWS::EC2::Instance`
(`hivemind.sandbox.ec2`), `start_host` gives it:

* **An address of its own**, 127.x.y.1 (`runtime.allocate_address`), which becomes the
  instance's private IP, and its public IP when it has one.
* **An SSH server** on that address at `SSH_PORT` (2222, not 22: the sandbox needs no
  privileges; `control.environment()` tells the product through HIVEMIND_SSH_PORT), with
  an ed25519 host key generated for it and kept in `<state dir>/hosts/<instance id>/`.
  The key is printed in the instance's console output (EC2 GetConsoleOutput) in
  cloud-init's format, so the Deployer pins it exactly as it does on AWS.
* **Login** as `ec2-user`, by public key only, with the key of the instance's key pair
  (its KeyName, or its launch template's), looked up in moto's key pairs at every
  connection. No key pair, no login.
* **Commands** (SSH exec requests) that really run under `bash -c`, never as this
  machine's root: as the daemon's own user when it is not root, and when it is, as
  root of a user namespace of the host that is `nobody` on this machine (see
  `host_tools.namespace`: folders such as /root that `nobody` cannot pass are hidden
  but for the paths the host needs). They run inside a private mount namespace of the
  host where its own folders
  `<host dir>/root/{opt,etc/systemd/system,tmp,var/log}` lie over `/opt`,
  `/etc/systemd/system`, `/tmp` and `/var/log` (see `host_tools.namespace`). The
  Deployer writes the paths it writes on AWS and they land in the host's folder.
  stdin, stdout, stderr and the exit status pass through unchanged. SFTP maps the same
  four paths to the same folders and refuses every other path. The host knows which
  users the instance has (root, ec2-user, and those its user data creates with
  `useradd`) and who each command would run as: `sudo -u`, `chown` and a unit's `User=`
  refuse a user it lacks, as the instance would (see `host_tools.users`).
* **The tools an Amazon Linux instance has** first on the PATH: `sudo`, `systemctl`,
  `journalctl` and `aws` (see `host_tools`), then the directory of this Python (python3,
  node and npm of the virtualenv), then the daemon's PATH.

**One address per host.** All hosts share this machine's network stack. An app that
binds the wildcard address 0.0.0.0 takes its port on *every* loopback address: the
second host running the same app would fail with "address in use", and a load balancer
forwarding to one host's address could reach another host's app. So every service the
host's systemctl starts binds the host's address where it asks for the wildcard,
whatever script launched it (a deploy's `ExecStart=/bin/bash .../start.sh` that execs
`gunicorn --bind 0.0.0.0:$PORT`, say): its Python programs load a `sitecustomize` that
rewrites `socket.bind` to 0.0.0.0 or "" (and :: on a dual-stack socket) on any port but
0, and its Node programs a `--require`d hook that rewrites `listen()` with no host,
0.0.0.0 or :: (`host_tools/one_address`, put on PYTHONPATH and NODE_OPTIONS by
`units.service_environment`). systemctl also replaces 0.0.0.0 in ExecStart and in any
environment value that is exactly 0.0.0.0, and sets HOST to the address, which most
web frameworks read. Still shared: the wildcard bound by a program in another language,
by Python started with -I, -E or -S (no PYTHONPATH or no `site`), by an IPv6-only socket
on ::, and by a command run over SSH rather than as a service.

**What stands in for the instance role.** Every process of a host gets
AWS_ENDPOINT_URL (the sandbox's own endpoint, learned from the request that created
the instance), fake credentials and the region, where an instance on AWS gets its
role's credentials and region from the metadata service.

**What its user data would start.** The sandbox runs no user data, but reads it for the
CloudWatch agent and the X-Ray daemon it starts (`hivemind.sandbox.telemetry`); those run
beside the host as its companions (`add_companion`), and a daemon's address reaches every
process of the host as AWS_XRAY_DAEMON_ADDRESS (`set_environment`).

**Faults.** `Sandbox::SSH` `connect` (subject: the instance id) closes a connection
before the SSH banner. `Sandbox::Command` `command` (subject: the command) does not run
the command; it exits 1 with the fault's message on stderr.

All hosts of the daemon are served by one asyncio loop in a background thread.
`SandboxHost.stop()` (the instance is terminated, or the daemon stops: every host is
registered with `runtime.on_shutdown`) stops its companions, every service the host runs,
every process left in its namespace and its SSH server, releases its address and removes
its folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from hivemind.sandbox import mirror, patching, runtime
from hivemind.sandbox.faults import FAULTS, InjectedFault
from hivemind.sandbox.host_tools import (
    ADDRESS_VARIABLE,
    HOME,
    HOST_DIR_VARIABLE,
    HOST_VARIABLES,
    HOSTNAME_VARIABLE,
    INSTANCE_VARIABLE,
    PATH_VARIABLE,
    TOOLS,
    namespace,
    source_root,
    units,
)
from hivemind.sandbox.host_tools import users as host_users

log = logging.getLogger("hivemind.sandbox")

SSH_PORT = 2222  # every host's SSH port (control.environment() repeats it for the product)
SSH_USER = "ec2-user"  # Amazon Linux 2023's login user, the only one a host accepts
START_TIMEOUT = 15.0  # seconds a host may take to come up
SERVICE_STOP_TIMEOUT = 5.0  # seconds services get to stop before everything is killed


class HostError(Exception):
    """A sandbox host could not be started; the message says why and what to do."""

    code = "SandboxHostFailed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# One asyncio loop serves every host of this process.
_LOOP = runtime.BackgroundLoop("sandbox-ssh-hosts")


# ---------------------------------------------------------------------------
# the mount namespace


@dataclass(frozen=True)
class NamespaceMode:
    """How hosts get their mount namespace on this machine."""

    unshare: tuple[str, ...]  # the command that creates one
    enter: tuple[str, ...]  # nsenter's options (after --target) that join it
    # As root: the unprivileged (uid, gid) the host's commands run as, in a user
    # namespace of their own (nsenter targets its process, not the holder).
    user: tuple[int, int] | None = None


# Who a host's commands are on this machine when the sandbox runs as root.
HOST_USER = "nobody"


def _unprivileged_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(HOST_USER)
    except KeyError:
        raise HostError(
            f"the sandbox runs as root and runs its instances' commands as the user "
            f"{HOST_USER}, which this machine lacks"
        ) from None
    return entry.pw_uid, entry.pw_gid


_mode: NamespaceMode | None = None
_mode_lock = threading.Lock()


def namespace_mode() -> NamespaceMode:
    """A private mount namespace as root, else one inside a user namespace: the first
    that works here (checked once per process). HostError when neither does."""
    global _mode
    with _mode_lock:
        if _mode is not None:
            return _mode
        missing = [tool for tool in ("unshare", "nsenter", "bash") if shutil.which(tool) is None]
        if missing:
            raise HostError(
                f"the sandbox runs EC2 instances as local SSH hosts, which needs "
                f"{', '.join(missing)} (util-linux, bash) on this machine's PATH"
            )
        candidates = []
        if os.geteuid() == 0:
            candidates.append(
                NamespaceMode(
                    ("unshare", "--mount", "--propagation", "private"),
                    ("--user", "--mount"),
                    _unprivileged_user(),
                )
            )
        candidates.append(
            NamespaceMode(
                ("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"),
                ("--user", "--mount", "--preserve-credentials"),
            )
        )
        reasons = []
        for candidate in candidates:
            probe = subprocess.run(
                [*candidate.unshare, "true"], capture_output=True, text=True, check=False
            )
            if probe.returncode == 0:
                _mode = candidate
                return candidate
            reasons.append(f"`{' '.join(candidate.unshare)}`: {probe.stderr.strip()}")
        raise HostError(
            "the sandbox cannot give an EC2 instance its own mount namespace on this machine ("
            + "; ".join(reasons)
            + "): run the sandbox as root, or allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)"
        )


def _ensure_mount_points() -> None:
    """The real paths a host's folders are laid over exist (created only by root)."""
    for _, target in namespace.MOUNTS:
        if os.path.isdir(target):
            continue
        if os.geteuid() != 0:
            raise HostError(
                f"{target} does not exist on this machine, and a sandbox host lays its own "
                f"folder over it: create it (sudo mkdir -p {target}) or run the sandbox as root"
            )
        os.makedirs(target, exist_ok=True)


# ---------------------------------------------------------------------------
# the hosts


_hosts: dict[str, SandboxHost] = {}
_hosts_lock = threading.Lock()


def host_of(instance_id: str) -> SandboxHost | None:
    """The running host of an instance, if it has one."""
    with _hosts_lock:
        return _hosts.get(instance_id)


def hostname_of(address: str) -> str:
    """EC2's host name for a private address: ip-127-1-2-1."""
    return "ip-" + address.replace(".", "-")


_npm_lock = threading.Lock()


def _npm_cache_for(user: tuple[int, int] | None) -> Path:
    """The npm cache a host's builds use. npm writes to its cache even offline (its
    temporary files), so hosts whose commands run as `user` (the sandbox being root) get
    a copy of this user's cache that `user` owns, made once per sandbox."""
    source = mirror.npm_cache()
    if user is None:
        return source
    copy = runtime.state_dir() / "npm-cache"
    with _npm_lock:
        if not copy.is_dir():
            staging = copy.with_name(f".npm-cache-{os.getpid()}-{threading.get_ident()}")
            shutil.rmtree(staging, ignore_errors=True)
            if (source / "_cacache").is_dir():
                shutil.copytree(source / "_cacache", staging / "_cacache", symlinks=True)
            staging.mkdir(exist_ok=True)
            _give(staging, user)
            os.replace(staging, copy)
    return copy


def _give(top: Path, user: tuple[int, int], keep: Iterable[Path] = ()) -> None:
    """Make `user` the owner of `top` and everything in it, but `keep`."""
    kept = {str(path) for path in keep}
    for folder, dirs, files in os.walk(top):
        for path in [folder, *(os.path.join(folder, name) for name in dirs + files)]:
            if path not in kept:
                os.lchown(path, *user)


class SandboxHost:
    """One EC2 instance as a local SSH host (see the module docstring). Created running by
    `start_host`; `stop()` ends it."""

    def __init__(
        self,
        instance_id: str,
        address: str,
        directory: Path,
        mode: NamespaceMode,
        authorized_key: Callable[[], str | None],
        aws_environment: dict[str, str],
    ) -> None:
        self.instance_id = instance_id
        self.address = address
        self.directory = directory
        self.hostname = hostname_of(address)
        self._mode = mode
        self._authorized_key = authorized_key
        self._aws_environment = aws_environment
        self._host_key: asyncssh.SSHKey | None = None
        self._holder: subprocess.Popen[bytes] | None = None
        self._anchor: int | None = None  # the user namespace's process, as root
        self._npm_cache = _npm_cache_for(mode.user)
        self._namespace: namespace.NamespaceId | None = None
        self._enter: tuple[str, ...] = ()
        self._server: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._booted = datetime.now(UTC)
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._forget_shutdown: Callable[[], None] = lambda: None
        self._companions: list[Callable[[], None]] = []

    # -- identity

    @property
    def bin_dir(self) -> Path:
        """The host's tools, first on its PATH."""
        return self.directory / "bin"

    @property
    def root(self) -> Path:
        """The folder that holds the host's /opt, /etc/systemd/system, /tmp and /var/log."""
        return namespace.host_root(self.directory)

    @property
    def host_key(self) -> asyncssh.SSHKey:
        assert self._host_key is not None, "a host has its key once started"
        return self._host_key

    @property
    def host_public_key(self) -> str:
        """The host key as a known_hosts entry would hold it: `ssh-ed25519 AAAA...`."""
        return " ".join(self.host_key.export_public_key().decode().split()[:2])

    @property
    def host_key_fingerprint(self) -> str:
        """`SHA256:<base64 without padding>`, as ssh-keygen -l prints it."""
        return self.host_key.get_fingerprint("sha256")

    @property
    def mount_namespace(self) -> namespace.NamespaceId | None:
        """The host's mount namespace (to find its processes), once started."""
        return self._namespace

    def processes(self) -> list[int]:
        """The live processes running in the host (its commands and services; not the
        process that holds its namespace for the sandbox)."""
        if self._namespace is None:
            return []
        own = [self._holder.pid] if self._holder is not None else []
        own += [self._anchor] if self._anchor is not None else []
        return namespace.processes_in(self._namespace, exclude=own)

    def local_path(self, path: str) -> Path | None:
        """Where an absolute path inside the host lies on this machine, for a path in the
        host's own folders (/opt, /etc/systemd/system, /var/log, /tmp); None for any other."""
        normal = posixpath.normpath(path)
        for folder, target in namespace.MOUNTS:
            if normal == target or normal.startswith(target + "/"):
                return self.root / folder / normal[len(target) :].lstrip("/")
        return None

    def add_companion(self, stop: Callable[[], None]) -> None:
        """Something that runs for this host (its CloudWatch agent, its X-Ray daemon) and
        is stopped first when the host stops; right away if it has stopped already."""
        with self._stop_lock:
            if not self._stopped:
                self._companions.append(stop)
                return
        stop()

    def set_environment(self, name: str, value: str) -> None:
        """Give every command and service the host starts from now on `name`=`value`
        (where an instance on AWS would have it from its own setup)."""
        self._aws_environment[name] = value

    def console_output(self) -> str:
        """The instance's console as cloud-init leaves it at first boot, host keys included."""
        stamp = self._booted.strftime("%a, %d %b %Y %H:%M:%S +0000")
        pid = 1500 + sum(map(ord, self.instance_id)) % 500  # cloud-init's, plausibly
        user = f"root@{self.hostname}"
        return "\n".join(
            [
                f"[    0.000000] Linux version 6.1.0-hivemind (sandbox) #1 SMP {stamp}",
                f"[    0.000000] Command line: root=LABEL=/ console=ttyS0 ({self.instance_id})",
                f"[    1.412305] cloud-init[{pid}]: Cloud-init v. 22.2.2 running 'init' at "
                f"{stamp}. Up 1.41 seconds.",
                f"[    1.420117] cloud-init[{pid}]: ci-info: | eth0 | True | {self.address} "
                "| 255.0.0.0 | global |",
                f"[    1.502811] cloud-init[{pid}]: Generating public/private ed25519 key pair.",
                "#############################################################",
                "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                f"256 {self.host_key_fingerprint} {user} (ED25519)",
                "-----END SSH HOST KEY FINGERPRINTS-----",
                "#############################################################",
                "-----BEGIN SSH HOST KEY KEYS-----",
                f"{self.host_public_key} {user}",
                "-----END SSH HOST KEY KEYS-----",
                f"[    2.093553] cloud-init[{pid}]: Cloud-init v. 22.2.2 finished at {stamp}. "
                "Datasource DataSourceEc2.  Up 2.09 seconds",
                "",
            ]
        )

    def authorizes(self, key: asyncssh.SSHKey) -> bool:
        """Whether `key` is the public key of the instance's key pair, as it is now."""
        text = self._authorized_key()
        if not text:
            return False
        try:
            allowed = asyncssh.import_public_key(text)
        except (asyncssh.KeyImportError, ValueError) as error:
            log.warning("%s: its key pair's public key is unusable: %s", self.instance_id, error)
            return False
        return bool(allowed.public_data == key.public_data)

    # -- environment

    @property
    def path(self) -> str:
        """PATH on the host: its tools, this Python's directory, the daemon's PATH."""
        entries = [str(self.bin_dir), os.path.dirname(sys.executable)]
        entries += os.environ.get("PATH", os.defpath).split(os.pathsep)
        return os.pathsep.join(dict.fromkeys(entry for entry in entries if entry))

    def environment(self) -> dict[str, str]:
        """What every command on the host starts with (an SSH session's environment)."""
        return {
            "PATH": self.path,
            "HOME": HOME,
            "LANG": "C.UTF-8",
            "USER": SSH_USER,
            "LOGNAME": SSH_USER,
            "SHELL": "/bin/bash",
            HOST_DIR_VARIABLE: str(self.directory),
            ADDRESS_VARIABLE: self.address,
            HOSTNAME_VARIABLE: self.hostname,
            INSTANCE_VARIABLE: self.instance_id,
            PATH_VARIABLE: self.path,
            **self._aws_environment,
            # Builds install from the sandbox's offline package mirror.
            **mirror.host_environment(self._npm_cache),
        }

    # -- starting

    def _start(self) -> None:
        _ensure_mount_points()
        for folder, _ in namespace.MOUNTS:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").chmod(0o1777)
        for own in (self.bin_dir, units.run_dir(self.directory), units.journal_dir(self.directory)):
            own.mkdir(parents=True, exist_ok=True)
        self._write_host_key()
        self._write_tools()
        if self._mode.user is not None:
            self._hand_over(self._mode.user)
        self._start_namespace()
        self._server = _LOOP.run(self._listen(), START_TIMEOUT)

    def _write_host_key(self) -> None:
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"root@{self.hostname}")
        key.write_private_key(self.directory / "ssh_host_ed25519_key")
        os.chmod(self.directory / "ssh_host_ed25519_key", 0o600)
        key.write_public_key(self.directory / "ssh_host_ed25519_key.pub")
        self._host_key = key

    def _hand_over(self, user: tuple[int, int]) -> None:
        """Give the host's folder to the user its commands run as (its SSH host key
        stays root's: the host's commands have no business reading it)."""
        keys = ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")
        _give(self.directory, user, keep=[self.directory / name for name in keys])

    def _write_tools(self) -> None:
        for tool in TOOLS:
            # -S (no site): a third of the start-up of a `sudo`. Only `aws` needs the
            # installed packages (boto3).
            flags = "" if tool == "aws" else " -S"
            script = self.bin_dir / tool
            script.write_text(
                f"#!{sys.executable}{flags}\n"
                f'"""The sandbox host\'s `{tool}`: hivemind.sandbox.host_tools.{tool}."""\n'
                "import sys\n"
                f"sys.path.insert(0, {source_root()!r})\n"
                f"from hivemind.sandbox.host_tools.{tool} import main\n"
                "sys.exit(main())\n",
                encoding="utf-8",
            )
            script.chmod(0o755)

    def _as_user(self) -> tuple[str, ...]:
        """The holder's arguments after the host's folder: the user the host's commands
        run as (as root), and the folders its builds read."""
        user = () if self._mode.user is None else ("--as", "{}:{}".format(*self._mode.user))
        return (*user, str(mirror.open_wheelhouse()), str(self._npm_cache))

    def _start_namespace(self) -> None:
        holder = subprocess.Popen(
            # -S (no site): it needs only the standard library and hivemind.
            [
                *self._mode.unshare,
                sys.executable,
                "-S",
                "-m",
                namespace.__name__,
                str(self.directory),
                *self._as_user(),
            ],
            env={**os.environ, "PYTHONPATH": source_root()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        self._holder = holder
        assert holder.stdout is not None and holder.stderr is not None
        answer = ""
        with selectors.DefaultSelector() as selector:
            selector.register(holder.stdout, selectors.EVENT_READ)
            if selector.select(START_TIMEOUT):
                answer = holder.stdout.readline().decode(errors="replace").strip()
        ready, _, anchor = answer.partition(" ")
        if ready != "ready" or (self._mode.user is not None) != anchor.isdigit():
            if holder.poll() is not None:
                answer = answer or holder.stderr.read().decode(errors="replace").strip()
            raise HostError(
                "the instance's mount namespace could not be set up: "
                + (answer.removeprefix("error: ") or f"no answer within {START_TIMEOUT:.0f} s")
            )
        own = namespace.namespace_of(holder.pid)
        if own is None or own == namespace.namespace_of(os.getpid()):
            # Never record this process's own namespace: stopping the host kills all of it.
            raise HostError("the instance's mount namespace is not its own (unshare failed)")
        self._namespace = own
        self._anchor = int(anchor) if anchor else None
        self._enter = (
            "nsenter",
            f"--target={self._anchor or holder.pid}",
            *self._mode.enter,
            f"--wd={HOME}",
            "--",
        )

    async def _listen(self) -> asyncssh.SSHAcceptor:
        try:
            return await asyncssh.create_server(
                lambda: _Connection(self),
                self.address,
                SSH_PORT,
                server_host_keys=[self.host_key],
                process_factory=self._run_command,
                sftp_factory=lambda channel: _HostFiles(channel, self),
                encoding=None,
                line_editor=False,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                gss_kex=False,
                gss_auth=False,
                password_auth=False,
                kbdint_auth=False,
                reuse_address=True,
            )
        except OSError as error:
            raise HostError(
                f"the instance's SSH server cannot listen on {self.address}:{SSH_PORT}: "
                f"{error.strerror or error}"
            ) from error

    # -- commands

    async def _run_command(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """One exec request: the command runs in the host's namespace under `bash -c`."""
        command = process.command
        if command is None:
            process.stderr.write(
                b"This sandbox host runs commands (ssh HOST COMMAND), not interactive shells.\n"
            )
            process.exit(1)
            return
        try:
            FAULTS.trip("Sandbox::Command", "command", subject=command)
        except InjectedFault as fault:
            log.info("%s: command failed by an injected fault: %s", self.instance_id, command)
            process.stderr.write(f"{fault.message}\n".encode())
            process.exit(1)
            return
        env = self.environment()
        protected = {"PATH", *HOST_VARIABLES, PATH_VARIABLE}
        env.update({k: v for k, v in process.env.items() if k not in protected})
        peer, peer_port = process.get_extra_info("peername", ("", 0))[:2]
        env["SSH_CLIENT"] = f"{peer} {peer_port} {SSH_PORT}"
        env["SSH_CONNECTION"] = f"{peer} {peer_port} {self.address} {SSH_PORT}"
        try:
            child = await asyncio.create_subprocess_exec(
                *self._enter,
                "bash",
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own group: a hang-up reaches all of it
            )
        except OSError as error:
            process.stderr.write(f"sandbox host: cannot run the command: {error}\n".encode())
            process.exit(255)
            return
        feeding = asyncio.ensure_future(_feed(process, child))
        assert child.stdout is not None and child.stderr is not None
        try:
            await asyncio.gather(
                _copy(child.stdout, process.stdout), _copy(child.stderr, process.stderr)
            )
            returncode = await child.wait()
        except (OSError, asyncssh.Error):
            return  # the client went away (the command is hung up on below)
        finally:
            feeding.cancel()
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGHUP)
        if returncode < 0:
            process.exit_with_signal(signal.Signals(-returncode).name.removeprefix("SIG"))
        else:
            process.exit(returncode)

    # -- stopping

    def stop(self) -> None:
        """Stop everything the host runs and remove it (idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        with _hosts_lock:
            if _hosts.get(self.instance_id) is self:
                del _hosts[self.instance_id]
        self._forget_shutdown()
        for companion in reversed(self._companions):
            try:
                companion()
            except Exception:
                log.exception("%s: stopping what runs for it failed", self.instance_id)
        if self._server is not None:
            try:
                _LOOP.run(self._close_server(), 10.0)
            except Exception:
                log.exception("%s: closing its SSH server failed", self.instance_id)
        self._stop_services()
        self._stop_namespace()
        runtime.release_address(self.address)
        shutil.rmtree(self.directory, ignore_errors=True)
        log.info("sandbox host %s (%s) stopped", self.instance_id, self.address)

    async def _close_server(self) -> None:
        assert self._server is not None
        self._server.close()
        for connection in list(self._connections):
            connection.abort()
        await self._server.wait_closed()

    def _stop_services(self) -> None:
        """Ask every running service's supervisor to stop it, and its process group (the
        service) to end; wait a little for them. Only processes of this host's namespace
        are signalled: a recorded pid may belong to another process by now."""
        running = [
            pid
            for state in units.all_states(self.directory)
            for pid in (state.supervisor, state.main_pid)
            if namespace.in_namespace(pid, self._namespace)
        ]
        for pid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)  # each has a session, so a group, of its own
        deadline = time.monotonic() + SERVICE_STOP_TIMEOUT
        while time.monotonic() < deadline and any(units.alive(pid) for pid in running):
            time.sleep(0.02)

    def _stop_namespace(self) -> None:
        """Close the holder's stdin (it kills what is left in the namespace and exits), and
        make sure of it from here."""
        holder = self._holder
        if holder is None:
            return
        with contextlib.suppress(OSError):
            if holder.stdin is not None:
                holder.stdin.close()
        try:
            holder.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
        if self._namespace is not None:
            namespace.kill_namespace(self._namespace)


class _Connection(asyncssh.SSHServer):
    """One SSH connection to a host: refused by a `connect` fault, else public-key login as
    ec2-user with the instance's key pair."""

    def __init__(self, host: SandboxHost) -> None:
        self._host = host
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        try:
            FAULTS.trip("Sandbox::SSH", "connect", subject=self._host.instance_id)
        except InjectedFault:
            log.info("%s: SSH connection refused by an injected fault", self._host.instance_id)
            conn.abort()  # before the banner: the client sees the connection closed
            return
        self._connection = conn
        self._host._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._host._connections.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == SSH_USER and self._host.authorizes(key)


async def _copy(reader: asyncio.StreamReader, writer: asyncssh.SSHWriter[bytes]) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()


async def _feed(
    process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process
) -> None:
    """The client's stdin to the command's, closed at the client's EOF; signals the client
    sends reach the command's process group."""
    stdin = child.stdin
    assert stdin is not None
    try:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.SignalReceived as received:
                with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.Signals[f"SIG{received.signal}"])
                continue
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
                continue
            if not data:
                break
            stdin.write(data)
            await stdin.drain()
    except (OSError, asyncssh.Error):
        pass  # the command closed its stdin, or the client went away
    finally:
        stdin.close()


class _HostFiles(asyncssh.SFTPServer):
    """SFTP on a host: `/opt`, `/etc/systemd/system`, `/tmp` and `/var/log` are the host's
    folders; any other path is refused. Symbolic links resolve as they do inside the host
    (an absolute target means the host's path, not this machine's)."""

    def __init__(self, channel: asyncssh.SSHServerChannel[bytes], host: SandboxHost) -> None:
        super().__init__(channel)
        # What it creates belongs to the user the host's commands run as (as root).
        self._owner = host._mode.user
        self._roots = [
            (target.encode(), os.fsencode(host.root / folder))
            for folder, target in namespace.MOUNTS
        ]

    def _local(self, path: bytes) -> bytes | None:
        """The local path of a canonical host path, or None when it is outside the host."""
        for target, local in self._roots:
            if path == target:
                return local
            if path.startswith(target + b"/"):
                return local + path[len(target) :]
        return None

    def _canonical(self, path: bytes, follow: bool) -> bytes:
        """`path` as an absolute host path without `.`, `..` or links on the way (nor a
        link at its end, when `follow`)."""
        pending = (
            path.split(b"/")
            if path.startswith(b"/")
            else [*HOME.encode().split(b"/"), *path.split(b"/")]
        )
        resolved = b"/"
        hops = 0
        while pending:
            name = pending.pop(0)
            if name in (b"", b"."):
                continue
            if name == b"..":
                resolved = posixpath.dirname(resolved)
                continue
            candidate = posixpath.join(resolved, name)
            last = not any(part not in (b"", b".") for part in pending)
            local = self._local(candidate)
            if local is None or (last and not follow) or not os.path.islink(local):
                resolved = candidate
                continue
            hops += 1
            if hops > 40:
                raise asyncssh.SFTPFailure("Too many levels of symbolic links")
            target = os.readlink(local)
            pending = target.split(b"/") + pending
            if target.startswith(b"/"):
                resolved = b"/"
        return resolved

    def map_path(self, path: bytes) -> bytes:
        local = self._local(self._canonical(path, follow=False))
        if local is None:
            raise asyncssh.SFTPPermissionDenied(
                "Permission denied: a sandbox host serves only /opt, /etc/systemd/system, "
                "/tmp and /var/log"
            )
        return local

    def reverse_map_path(self, path: bytes) -> bytes:
        for target, local in self._roots:
            if path == local or path.startswith(local + b"/"):
                return target + path[len(local) :]
        raise asyncssh.SFTPNoSuchFile("No such file")

    def realpath(self, path: bytes) -> bytes:
        return self._canonical(path, follow=True)

    def readlink(self, path: bytes) -> bytes:
        return os.readlink(self.map_path(path))

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        # The target is kept as written: it is resolved inside the host.
        local = self.map_path(newpath)
        os.symlink(oldpath, local)
        if self._owner is not None:
            os.lchown(local, *self._owner)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.map_path(path)
        super().mkdir(path, attrs)
        if self._owner is not None:
            os.lchown(local, *self._owner)

    def stat(self, path: bytes) -> os.stat_result:
        return os.stat(self.map_path(self._canonical(path, follow=True)))

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> Awaitable[None] | None:
        return super().setstat(self._canonical(path, follow=True), attrs)

    def statvfs(self, path: bytes) -> Any:
        return super().statvfs(self._canonical(path, follow=True))

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Any:
        return self._owned(super().open(self._canonical(path, follow=True), pflags, attrs))

    def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> Any:
        opened = super().open56(self._canonical(path, follow=True), desired_access, flags, attrs)
        return self._owned(opened)

    def _owned(self, file: Any) -> Any:
        """A file opened to write (perhaps created) is given to the host's user."""
        if self._owner is not None and any(c in getattr(file, "mode", "r") for c in "wax+"):
            os.fchown(file.fileno(), *self._owner)
        return file

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        directory = self._canonical(path, follow=True)
        local = self.map_path(directory)
        here = asyncssh.SFTPAttrs.from_local(os.stat(local))
        parent_local = self._local(posixpath.dirname(directory))
        parent = asyncssh.SFTPAttrs.from_local(os.stat(parent_local)) if parent_local else here
        yield asyncssh.SFTPName(b".", attrs=here)
        yield asyncssh.SFTPName(b"..", attrs=parent)
        with os.scandir(local) as entries:
            for entry in entries:
                attrs = asyncssh.SFTPAttrs.from_local(entry.stat(follow_symlinks=False))
                yield asyncssh.SFTPName(os.fsencode(entry.name), attrs=attrs)


# ---------------------------------------------------------------------------


def sandbox_endpoint() -> str | None:
    """The sandbox's own URL, from the request being served (moto serves each API call
    inside a Flask request); None outside one."""
    try:
        import flask
    except ImportError:
        return None
    if not flask.has_request_context():
        return None
    return str(flask.request.host_url).rstrip("/")


def start_host(
    instance_id: str,
    *,
    authorized_key: Callable[[], str | None],
    region: str,
    endpoint: str | None = None,
    users: Iterable[str] = (),
) -> SandboxHost:
    """Start the SSH host of a new instance and return it running.

    `authorized_key` answers, at each connection, the OpenSSH public key that may log in
    (the instance's key pair's), or None. `endpoint` is the sandbox's URL the host's
    processes call AWS at (default: the URL of the request being served). `users` are
    the users the instance has beside root and ec2-user (see `host_tools.users`). HostError says
    why a host could not start; nothing of it is left behind then."""
    install()
    mode = namespace_mode()
    endpoint = endpoint or sandbox_endpoint()
    access_key_id, secret_access_key = runtime.credentials()
    aws = {
        "AWS_ACCESS_KEY_ID": access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret_access_key,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if endpoint:
        aws["AWS_ENDPOINT_URL"] = endpoint
    address = runtime.allocate_address([SSH_PORT])
    directory = runtime.state_dir() / "hosts" / instance_id
    host = SandboxHost(instance_id, address, directory, mode, authorized_key, aws)
    try:
        shutil.rmtree(directory, ignore_errors=True)  # a crashed daemon's, if any
        directory.mkdir(parents=True)
        host_users.write_users(directory, users)
        host._start()
    except BaseException:
        host.stop()
        raise
    with _hosts_lock:
        _hosts[instance_id] = host
    host._forget_shutdown = runtime.on_shutdown(host.stop)
    log.info("sandbox host %s serving SSH at %s:%s", instance_id, address, SSH_PORT)
    return host


_installed = False


def install() -> None:
    """Teach moto's EC2 about hosts (idempotent): GetConsoleOutput answers a host's console
    (base64, as AWS sends it) instead of moto's sample text, and terminating an instance
    (TerminateInstances, or its stack's deletion) stops its host."""
    global _installed
    if _installed:
        return
    from moto.core.responses import ActionResult
    from moto.core.types import Base64EncodedString
    from moto.core.utils import utcnow
    from moto.ec2.models.instances import Instance
    from moto.ec2.responses import EC2Response
    from moto.ec2.responses.general import General

    original_console_output = General.get_console_output
    original_terminate = Instance.terminate

    def get_console_output(self: EC2Response) -> ActionResult:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        host = host_of(instance.id)
        if host is None:
            return original_console_output(self)
        output = Base64EncodedString.from_raw_string(host.console_output())
        return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(), "Output": output})

    def terminate(self: Instance) -> Any:
        previous_state = original_terminate(self)
        host = host_of(self.id)
        if host is not None:
            host.stop()
        return previous_state

    patching.serve(EC2Response, "ec2", "GetConsoleOutput", get_console_output)
    patching.replace(Instance, "terminate", terminate)
    _installed = True
