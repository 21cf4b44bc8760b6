"""The on-box deploy of one release, on every instance in parallel (Fabric over SSH).

For each instance, a sequence a person can read aloud:

1. upload the release archive and unpack it into
   `/opt/hivemind/<app>/releases/<release-id>` (root's);
2. build it there with the stack's tools (a virtualenv for Python, then the app's build
   command: `pip install ...`, `npm ci`, `go build`, `mvn package`, `bundle install`),
   as the app's unprivileged user `hm-<app>`, in that one folder lent to it for the
   build; then the folder is root's again, with no group or other write, so the
   service runs code it cannot change (see `deployer.layout`);
3. write the service's environment file (0600): the port, and the database settings,
   which the instance reads from Secrets Manager with its own role;
4. install the systemd unit rendered from `templates/`;
5. switch `/opt/hivemind/<app>/current` to the release atomically, restart the
   service `hivemind-<app>`;
6. wait until the app answers on its port, locally;
7. keep the last three releases, and the one that served before this one, for an
   instant switch back (prune never removes the release `current` points to).

Switching back (`activate`) is steps 5 and 6 alone, to a release an instance still
keeps. A failing step stops that instance's deploy with the command, its exit code, the
tail of its stderr and of the service's log.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind.deployer.access import Instance, connect
from hivemind.deployer.layout import Layout
from hivemind.errors import BadInputError, HiveMindError
from hivemind.records import InstanceRelease
from hivemind.render import render
from hivemind.runtimes import packages_for
from hivemind.spec import DeploymentSpec

KEEP_RELEASES = 3
LOCAL_HEALTH_SECONDS = 90.0
# An app that exits this many times while it should be starting will not start.
RESTARTS_BEFORE_GIVING_UP = 3
# An app answering its health path with 4xx this long is up, at the wrong path: the load
# balancer's health check (200-399, redirects not followed) will never pass it. One that
# refuses connections this long while listening elsewhere is on the wrong port (or the
# loopback address only).
WRONG_ANSWER_SECONDS = 10.0
# Paths tried then, to tell the operator (and Medic) one the app does answer.
HEALTH_CANDIDATES = ("/health", "/healthz", "/api/health", "/ping", "/status", "/ready", "/")
_TAIL = 20
DATABASE_NAME = "app"  # the database the stack creates (hivemind_constructs.database)
_SCHEMES = {"postgres": "postgresql", "mysql": "mysql"}
# What a release id may look like (`<UTC stamp>-<short commit>` or `<stamp>-worktree`):
# an id from the user goes into paths and commands only if it fits.
_RELEASE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")


class DeployFailed(HiveMindError):
    """A step of the on-box deploy failed on one instance."""


# How a deploy failure's detail lines begin (DeployFailed here; the app log of an
# unhealthy target in the Conductor): `read_details` sorts them back out.
EXIT_CODE = "exit code "
COMMAND = "command: "
STDERR = "stderr: "
APP_LOG = "app log: "
APP_LOG_OF = "app log of "  # "app log of i-...:", then the log's lines indented by two


@dataclass(frozen=True)
class FailureDetails:
    """A deploy failure's detail lines, sorted back into what they say."""

    exit_code: int | None = None
    command: str = ""
    stderr: tuple[str, ...] = ()
    app_log: tuple[str, ...] = ()
    other: tuple[str, ...] = ()  # every other line, in order (exit code and command too)


def read_details(details: Iterable[str]) -> FailureDetails:
    """The detail lines of a DeployFailed or TargetsUnhealthy, sorted out."""
    exit_code, command = None, ""
    stderr: list[str] = []
    app_log: list[str] = []
    other: list[str] = []
    in_app_log = False
    for line in details:
        if line.startswith(STDERR):
            stderr.append(line.removeprefix(STDERR))
        elif line.startswith(APP_LOG):
            app_log.append(line.removeprefix(APP_LOG))
        elif line.startswith(APP_LOG_OF):
            in_app_log = True
        elif in_app_log and line.startswith("  "):
            app_log.append(line[2:])
        else:
            in_app_log = False
            other.append(line)
            if line.startswith(EXIT_CODE):
                number = line.removeprefix(EXIT_CODE).strip()
                exit_code = int(number) if number.lstrip("-").isdigit() else None
            elif line.startswith(COMMAND):
                command = line.removeprefix(COMMAND)
    return FailureDetails(exit_code, command, tuple(stderr), tuple(app_log), tuple(other))


@dataclass(frozen=True)
class Release:
    """What is deployed: the archive, its id and commit, and the stack it runs against."""

    archive: Path
    release_id: str
    commit: str | None
    outputs: dict[str, str]


class Deployer:
    """Deploys a release to instances; collaborators are given, not looked up."""

    def __init__(
        self,
        spec: DeploymentSpec,
        deployment_id: str,
        record_folder: Path,
        *,
        log: Callable[[str], None],
        connect_to: Callable[[Instance], Any] | None = None,
    ) -> None:
        self.spec = spec
        self.deployment_id = deployment_id
        self.record_folder = record_folder
        self.layout = Layout(spec.app.name)
        self.log = log
        self.connect_to = connect_to or (lambda instance: connect(instance, record_folder))

    def deploy(self, release: Release, instances: list[Instance]) -> list[InstanceRelease]:
        """Deploy to every instance at once; the first failure (by instance order) is
        raised after all have finished, so none is left half-way without being reported."""
        return self._on_each(instances, lambda instance: self.deploy_one(release, instance))

    def deploy_one(self, release: Release, instance: Instance) -> InstanceRelease:
        """Deploy to one instance: upload, build, start (configure, switch, restart), wait
        until it answers locally, prune. Seconds per step: upload, build, start, healthy."""
        result = InstanceRelease(
            instance_id=instance.instance_id,
            address=instance.address,
            release_id=release.release_id,
            commit=release.commit,
        )
        connection = self.connect_to(instance)
        try:
            steps = _DeploySteps(self, connection, instance, release, result)
            steps.timed("upload", steps.upload)
            steps.timed("build", steps.build)
            steps.timed("start", steps.start)
            steps.timed("healthy", steps.wait_until_answering)
            steps.prune()
        finally:
            connection.close()
        self.log(f"deploy: {instance.instance_id} runs {release.release_id} ({_timings(result)})")
        return result

    def activate(self, release_id: str, instances: list[Instance]) -> list[InstanceRelease]:
        """Switch every instance at once to `release_id`, a release each still keeps;
        the first failure (by instance order) is raised after all have finished."""
        return self._on_each(instances, lambda instance: self.activate_one(release_id, instance))

    def activate_one(self, release_id: str, instance: Instance) -> InstanceRelease:
        """Switch one instance's `current` to the kept release `release_id`, restart the
        app and wait until it answers locally. Seconds per step: switch, healthy.
        DeployFailed names the releases the instance keeps when it does not keep this one."""
        if not _RELEASE_ID.fullmatch(release_id):
            raise BadInputError(
                f"{release_id!r} is not a release id",
                cause="release ids look like 20261103101500-3f2a9c1 (UTC time, short commit)",
                next_step=f"`hivemind status {self.deployment_id}` shows the releases kept",
            )
        result = InstanceRelease(
            instance_id=instance.instance_id, address=instance.address, release_id=release_id
        )
        connection = self.connect_to(instance)
        try:
            steps = _Steps(
                self,
                connection,
                instance,
                result,
                stage="activate",
                next_step=f"`hivemind update {self.deployment_id} --version <ref>` builds "
                "and deploys a version (commit, tag or branch) again",
            )
            current, kept = steps.releases()
            if release_id not in kept:
                raise DeployFailed(
                    f"release {release_id} is not kept on {instance.instance_id} "
                    f"({instance.address})",
                    where=f"activate on {instance.instance_id}",
                    cause=f"{instance.instance_id} keeps "
                    + (", ".join(_marked(kept, current)) or "no release"),
                    next_step=f"`hivemind update {self.deployment_id} --version <ref>` "
                    "builds it again from the commit, tag or branch it was made from",
                )
            result.kept_releases = kept
            steps.timed("switch", steps.switch)
            steps.timed("healthy", steps.wait_until_answering)
        finally:
            connection.close()
        self.log(f"activate: {instance.instance_id} runs {release_id} ({_timings(result)})")
        return result

    def releases(self, instance: Instance) -> tuple[str | None, list[str]]:
        """The release `current` points to on `instance` (None before the first deploy)
        and every release it keeps, oldest first."""
        connection = self.connect_to(instance)
        try:
            return _read_releases(connection, self.layout, instance)
        finally:
            connection.close()

    def log_tail(self, instance: Instance, lines: int = _TAIL) -> list[str]:
        """The app's recent log lines on `instance` (for an unhealthy target)."""
        connection = self.connect_to(instance)
        try:
            return _log_tail(connection, self.layout, lines)
        finally:
            connection.close()

    def _on_each(
        self, instances: list[Instance], work: Callable[[Instance], InstanceRelease]
    ) -> list[InstanceRelease]:
        """`work` on every instance at once; the first failure (by instance order) is
        raised after all have finished, so none is left half-way without being reported."""
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(instances)))) as pool:
            futures = [pool.submit(work, instance) for instance in instances]
        results: list[InstanceRelease] = []
        errors: list[BaseException] = []
        for future in futures:
            error = future.exception()
            if error is not None:
                errors.append(error)
            else:
                results.append(future.result())
        if errors:
            raise errors[0]
        return results


class _Steps:
    """What deploying and switching back share on one instance, over its connection:
    running a command (a failure explained), switching `current` and restarting the
    app, waiting until it answers, reading and pruning the releases kept."""

    def __init__(
        self,
        deployer: Deployer,
        connection: Any,
        instance: Instance,
        result: InstanceRelease,
        *,
        stage: str,
        next_step: str,
    ) -> None:
        self.deployer = deployer
        self.spec = deployer.spec
        self.layout = deployer.layout
        self.connection = connection
        self.instance = instance
        self.result = result
        self.stage = stage  # "deploy" or "activate", for the failure's `where`
        self.next_step = next_step
        self.folder = self.layout.release(result.release_id)
        self.serving: str | None = None  # the release serving before this one; prune keeps it

    def timed(self, name: str, step: Callable[[], None]) -> None:
        started = time.monotonic()
        step()
        self.result.seconds[name] = round(time.monotonic() - started, 3)

    def run(
        self, command: str, *, step: str, with_log: bool = False, shown: str | None = None
    ) -> str:
        """Run `command`; on failure raise DeployFailed with its output's tail and the
        command (or `shown`, what of it says what failed)."""
        done = self.connection.run(command, hide=True, warn=True, in_stream=False)
        if done.exited != 0:
            details = [f"{EXIT_CODE}{done.exited}", f"{COMMAND}{_short(shown or command)}"]
            details += [f"{STDERR}{line}" for line in _tail(done.stderr or done.stdout)]
            if with_log:
                details += [f"{APP_LOG}{line}" for line in _log_tail(self.connection, self.layout)]
            raise DeployFailed(
                f"{step} failed on {self.instance.instance_id} ({self.instance.address})",
                where=f"{self.stage}, {step} on {self.instance.instance_id}",
                cause=(_tail(done.stderr or done.stdout, 1) or [f"exit code {done.exited}"])[0],
                details=details,
                next_step=self.next_step,
            )
        return str(done.stdout)

    def switch(self) -> None:
        """Point `current` at this release and restart the app on it."""
        layout = self.layout
        # The `current` link moves in one rename: a reader sees the old or the new release.
        self.run(
            f"sudo ln -sfn {self.folder} {layout.root}/current.next && "
            f"sudo mv -Tf {layout.root}/current.next {layout.current} && "
            f"sudo systemctl daemon-reload && sudo systemctl enable {layout.unit_name} && "
            f"sudo systemctl restart {layout.unit_name}",
            step="start",
            with_log=True,
        )

    def wait_until_answering(self) -> None:
        port = self.spec.app.port
        if port is None:
            self.run(
                f"sudo systemctl is-active {self.layout.unit_name}", step="start", with_log=True
            )
            return
        host = self.instance.private_ip
        base = f"http://{host}:{port}"
        given = json.dumps(
            {
                "url": base + self.spec.app.health_path,
                "base": base,
                "host": host,
                "port": port,
                "seconds": LOCAL_HEALTH_SECONDS,
                "unit": self.layout.unit_name,
                "restarts": RESTARTS_BEFORE_GIVING_UP,
                "wrong_seconds": WRONG_ANSWER_SECONDS,
                "candidates": list(HEALTH_CANDIDATES),
            }
        )
        # As root: the app's processes (their sockets) belong to the app's user.
        self.run(
            f"sudo python3 -c {shlex.quote(_ANSWERS)} {shlex.quote(given)}",
            step="health check",
            with_log=True,
        )

    def releases(self) -> tuple[str | None, list[str]]:
        return _read_releases(self.connection, self.layout, self.instance)

    def prune(self) -> None:
        """Keep the newest KEEP_RELEASES releases (release ids sort by time), the one
        `current` points to, this one and the one serving before it (whatever their ids
        say about their age: an old release switched back to, a clock that was behind)."""
        current, listing = self.releases()
        keep = {*listing[-KEEP_RELEASES:], self.result.release_id}
        keep.update(name for name in (current, self.serving) if name is not None)
        old = [name for name in listing if name not in keep]
        if old:
            paths = " ".join(self.layout.release(shlex.quote(name)) for name in old)
            self.run(f"sudo rm -rf {paths}", step="prune")
        self.result.kept_releases = [name for name in listing if name in keep]


class _DeploySteps(_Steps):
    """The steps only a deploy has: upload, build, configure (then the shared switch)."""

    def __init__(
        self,
        deployer: Deployer,
        connection: Any,
        instance: Instance,
        release: Release,
        result: InstanceRelease,
    ) -> None:
        super().__init__(
            deployer,
            connection,
            instance,
            result,
            stage="deploy",
            next_step="fix the cause in the app, then `hivemind retry "
            f"{deployer.deployment_id}` (it resumes at the deploy stage)",
        )
        self.release = release

    def put(self, local: str | io.BytesIO, remote: str) -> None:
        self.connection.put(local, remote)

    def upload(self) -> None:
        self.serving, _kept = self.releases()
        layout, folder = self.layout, self.folder
        staged = f"/tmp/hivemind-{self.release.release_id}.tar.gz"
        self.put(str(self.release.archive), staged)
        # Root's folders, root's release: the archive is unpacked (without the owners it
        # records) into a new folder only root can write (see `deployer.layout`).
        self.run(
            f"sudo install -d -m 0755 {layout.root} {layout.releases} {layout.shared} "
            f"{layout.log_dir} && sudo rm -rf {folder} && "
            f"sudo install -d -m 0755 {folder} && "
            f"sudo tar --no-same-owner -xzf {staged} -C {folder} && "
            f"sudo chmod -R go-w {folder} && rm -f {staged}",
            step="upload",
        )

    def build(self) -> None:
        app = self.spec.app
        commands = []
        if app.language == "python":
            runtime = packages_for(app.language, app.runtime_version)
            commands.append(f"python{runtime.provides} -m venv .venv")
            commands.append(". .venv/bin/activate")
        if app.build_command:
            commands.append(app.build_command)
        if not commands:
            return
        script = " && ".join(commands)
        self.run(
            build_command(self.layout, self.folder, script),
            step="build",
            shown=f"sudo -u {self.layout.user} -H bash -c {shlex.quote(script)} (in {self.folder})",
        )

    def start(self) -> None:
        self.configure()
        self.switch()

    def configure(self) -> None:
        """Write the environment file, the release's start script and the systemd unit."""
        layout, app = self.layout, self.spec.app
        outputs = self.release.outputs
        values = {
            "app_name": app.name,
            "deployment_id": self.deployer.deployment_id,
            "app_root": layout.root,
            "app_user": layout.user,
            "env_file": layout.env_file,
            "log_file": layout.log_file,
            "release_dir": layout.current,
            "start_command": app.start_command,
        }
        env_script = environment_script(self.spec, layout, outputs)
        staging = f"/tmp/hivemind-{self.release.release_id}"
        self.run(f"install -d -m 0700 {staging}", step="start")
        for name, text in (
            ("app.env.sh", env_script),
            ("app.service", render("app.service.j2", **values)),
            ("start.sh", render("start.sh.j2", **values)),
        ):
            self.put(io.BytesIO(text.encode()), f"{staging}/{name}")
        self.run(
            f"sudo bash {staging}/app.env.sh && "
            # The build had the folder: whatever it left at .hivemind (a link, say) goes
            # before root writes there.
            f"sudo rm -rf {self.folder}/.hivemind && "
            f"sudo install -D -m 0755 {staging}/start.sh {self.folder}/.hivemind/start.sh && "
            f"sudo install -m 0644 {staging}/app.service {layout.unit} && rm -rf {staging}",
            step="configure",
        )


# Waits for any HTTP answer below 500 from the app (the load balancer's check is stricter);
# gives up early on an app that keeps exiting (systemd restarting it, or giving up on it).
# Its values arrive as one JSON argument, never in its source: a health path or a unit
# name is data to it, whatever characters it holds.
_ANSWERS = """
import json, os, subprocess, sys, time, urllib.error, urllib.request
given = json.loads(sys.argv[1])
url, base, host, port, unit = (given[k] for k in ("url", "base", "host", "port", "unit"))
seconds, wrong_seconds = given["seconds"], given["wrong_seconds"]
deadline = time.time() + seconds
last = "no answer"
wrong_since = refused_since = None
def address_of(hexed):
    if len(hexed) == 8:  # /proc/net/tcp: IPv4, little-endian
        return ".".join(str(int(hexed[i:i + 2], 16)) for i in (6, 4, 2, 0))
    if hexed[:24] == "0000000000000000FFFF0000":
        return "::ffff:" + address_of(hexed[24:])
    return {"0" * 32: "[::]", "0" * 24 + "01000000": "[::1]"}.get(hexed, "[ipv6]")
def listening():  # the (address, port) pairs the unit's processes listen on (TCP)
    main = subprocess.run(
        ["systemctl", "show", "-p", "MainPID", "--value", "--", unit],
        capture_output=True, text=True,
    ).stdout.strip()
    if not main.isdigit() or main == "0":
        return []
    children = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % name) as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(name))
    pids, todo = set(), [int(main)]
    while todo:
        pid = todo.pop()
        if pid not in pids:
            pids.add(pid)
            todo += children.get(pid, [])
    sockets = set()
    for pid in pids:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                lines = rows.read().splitlines()[1:]
        except OSError:
            continue
        for row in lines:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in sockets:
                address, port = fields[1].split(":")
                found.add((address_of(address), int(port, 16)))
    return sorted(found)
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # as the load balancer: a redirect is an answer, not followed
opener = urllib.request.build_opener(Stay)
def code(url):
    try:
        with opener.open(url, timeout=3) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
def restarts():
    shown = subprocess.run(
        ["systemctl", "show", "-p", "NRestarts", "--value", "--", unit],
        capture_output=True, text=True,
    ).stdout.strip()
    return int(shown) if shown.isdigit() else 0
def failed():
    return subprocess.run(["systemctl", "is-failed", "--quiet", "--", unit]).returncode == 0
while time.time() < deadline:
    if restarts() >= given["restarts"] or failed():
        sys.stderr.write(
            "the app keeps exiting: systemd restarted %s %d times (last: %s)\\n"
            % (unit, restarts(), last)
        )
        sys.exit(1)
    try:
        answered = code(url)
    except Exception as error:
        last, wrong_since = str(error), None
        refused_since = refused_since or time.time()
        if time.time() - refused_since >= wrong_seconds:
            bound = listening()
            reachable = ("0.0.0.0", "[::]", host, "::ffff:" + host)
            if bound and (port not in [p for a, p in bound if a in reachable]):
                sys.stderr.write(
                    "the app listens on %s, not on %s:%d where the load balancer "
                    "checks it\\n" % (", ".join(
                        "%s:%d" % (a, p) + ("" if a in reachable else " (this instance only)")
                        for a, p in bound
                    ), host, port)
                )
                sys.exit(1)
    else:
        refused_since = None
        if answered < 400:
            sys.exit(0)
        last = "HTTP %s" % answered
        if answered >= 500:
            wrong_since = None
        elif wrong_since is None:
            wrong_since = time.time()
        elif time.time() - wrong_since >= wrong_seconds:
            others = []
            for path in given["candidates"]:
                try:
                    others.append("%s -> %s" % (path, code(base + path)))
                except Exception as error:
                    others.append("%s -> %s" % (path, type(error).__name__))
            sys.stderr.write(
                "other paths: %s\\nthe app answers %s with HTTP %s, but the load "
                "balancer's health check wants 200-399\\n" % (", ".join(others), url, answered)
            )
            sys.exit(1)
    time.sleep(0.5)
sys.stderr.write("the app did not answer at %s within %.0f s: %s\\n" % (url, seconds, last))
sys.exit(1)
"""


_RELEASES_MARK = "--- releases"


def environment_script(spec: DeploymentSpec, layout: Layout, outputs: dict[str, str]) -> str:
    """The script (run as root on the instance) that writes the service's environment
    file: the port and the spec's plain values as systemd reads them, each line passed
    to printf as one quoted word; with a database, its settings read from Secrets Manager
    on the instance."""
    app = spec.app
    plain = [("PORT", str(app.port))] if app.port is not None else []
    plain += [(name, value) for name, value in app.env.items() if name != "PORT"]
    secret_arn = outputs.get("DatabaseSecretArn", "")
    return render(
        "app_env.sh.j2",
        app_name=app.name,
        env_file=layout.env_file,
        plain=[shlex.quote(_environment_line(name, value)) for name, value in plain],
        secret_arn=shlex.quote(secret_arn) if secret_arn else "",
        region=shlex.quote(spec.region),
        db_host=shlex.quote(outputs.get("DatabaseEndpoint", "")),
        db_port=shlex.quote(outputs.get("DatabasePort", "")),
        db_name=shlex.quote(DATABASE_NAME),
        db_scheme=shlex.quote(_SCHEMES.get(spec.database.engine, "")),
    )


def build_command(layout: Layout, folder: str, script: str) -> str:
    """The shell line that builds a release as the app's user: the release's folder is
    lent to `layout.user` (links themselves, never what they point to: `-h`), `script`
    runs there as that user with its own home, and whatever the build did, the folder is
    root's again and writable by root alone before anything else runs from it. The build
    line's exit status is the line's."""
    lend = f"sudo chown -hR {layout.user}:{layout.user} {folder}"
    build = f"sudo -u {layout.user} -H bash -c {shlex.quote(script)}"
    take_back = f"sudo chown -hR root:root {folder} && sudo chmod -R go-w {folder}"
    return f"cd {folder} && {lend} && {{ {build}; built=$?; {take_back} && exit $built; }}"


def _read_releases(
    connection: Any, layout: Layout, instance: Instance
) -> tuple[str | None, list[str]]:
    """The release `current` points to (None when none) and the releases kept, by id."""
    root = layout.releases
    command = (
        f"readlink {layout.current} 2>/dev/null; echo {shlex.quote(_RELEASES_MARK)}; "
        f"ls -1 {root} 2>/dev/null; true"
    )
    done = connection.run(command, hide=True, warn=True, in_stream=False)
    if done.exited != 0:
        raise DeployFailed(
            f"could not read the releases on {instance.instance_id} ({instance.address})",
            where=f"releases on {instance.instance_id}",
            cause=(_tail(done.stderr or done.stdout, 1) or [f"exit code {done.exited}"])[0],
            details=[f"{EXIT_CODE}{done.exited}", f"{COMMAND}{command}"],
        )
    link, _, listing = str(done.stdout).partition(f"{_RELEASES_MARK}\n")
    target = link.strip()
    current = posixpath.basename(target) if posixpath.dirname(target) == root else None
    return current, sorted(listing.split())


def _marked(kept: list[str], current: str | None) -> list[str]:
    return [f"{name} (current)" if name == current else name for name in kept]


def _timings(result: InstanceRelease) -> str:
    return ", ".join(f"{step} {seconds:.1f}s" for step, seconds in result.seconds.items())


def _log_tail(connection: Any, layout: Layout, lines: int = _TAIL) -> list[str]:
    done = connection.run(
        f"sudo tail -n {lines} {layout.log_file} 2>/dev/null || "
        f"sudo journalctl -u {layout.unit_name} -n {lines} --no-pager",
        hide=True,
        warn=True,
        in_stream=False,
    )
    return _tail(done.stdout or "", lines) or ["(the app wrote nothing)"]


def _tail(text: str, lines: int = 8) -> list[str]:
    return [line for line in (text or "").strip().splitlines() if line.strip()][-lines:]


def _short(command: str, limit: int = 160) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _environment_line(name: str, value: str) -> str:
    """`NAME="value"` as systemd's EnvironmentFile reads it (quotes and backslashes escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'
