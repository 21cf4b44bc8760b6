"""The on-box deploy of one release, on every instance in parallel (Fabric over SSH).

For each instance, a sequence a person can read aloud:

1. upload the release archive and unpack it into `/opt/<app>/releases/<release-id>`;
2. build it there with the stack's tools (a virtualenv for Python, then the app's build
   command: `pip install ...`, `npm ci`, `go build`, `mvn package`, `bundle install`);
3. write the service's environment file (0600): the port, and the database settings,
   which the instance reads from Secrets Manager with its own role;
4. install the systemd unit rendered from `templates/`;
5. switch `/opt/<app>/current` to the release atomically, restart the service;
6. wait until the app answers on its port, locally;
7. keep the last three releases for an instant switch back.

A failing step stops that instance's deploy with the command, its exit code, the tail
of its stderr and of the service's log.
"""

from __future__ import annotations

import io
import shlex
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind.deployer.access import Instance, connect
from hivemind.errors import HiveMindError
from hivemind.records import InstanceRelease
from hivemind.render import render
from hivemind.runtimes import packages_for
from hivemind.spec import DeploymentSpec

KEEP_RELEASES = 3
LOCAL_HEALTH_SECONDS = 90.0
# An app that exits this many times while it should be starting will not start.
RESTARTS_BEFORE_GIVING_UP = 3
_TAIL = 20
DATABASE_NAME = "app"  # the database the stack creates (hivemind_constructs.database)
_SCHEMES = {"postgres": "postgresql", "mysql": "mysql"}


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
class Layout:
    """Where a release lives on an instance."""

    app: str

    @property
    def root(self) -> str:
        return f"/opt/{self.app}"

    def release(self, release_id: str) -> str:
        return f"{self.root}/releases/{release_id}"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def env_file(self) -> str:
        return f"{self.root}/shared/app.env"

    @property
    def unit(self) -> str:
        return f"/etc/systemd/system/{self.app}.service"

    @property
    def log_file(self) -> str:
        return f"/var/log/{self.app}/app.log"


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
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(instances)))) as pool:
            futures = [pool.submit(self.deploy_one, release, i) for i in instances]
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

    def deploy_one(self, release: Release, instance: Instance) -> InstanceRelease:
        result = InstanceRelease(
            instance_id=instance.instance_id,
            address=instance.address,
            release_id=release.release_id,
            commit=release.commit,
        )
        connection = self.connect_to(instance)
        try:
            steps = _Steps(self, connection, instance, release, result)
            steps.timed("upload", steps.upload)
            steps.timed("build", steps.build)
            steps.timed("start", steps.start)
            steps.timed("healthy", steps.wait_until_answering)
            steps.prune()
        finally:
            connection.close()
        self.log(
            f"deploy: {instance.instance_id} runs {release.release_id} ("
            + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
            + ")"
        )
        return result

    def log_tail(self, instance: Instance, lines: int = _TAIL) -> list[str]:
        """The app's recent log lines on `instance` (for an unhealthy target)."""
        connection = self.connect_to(instance)
        try:
            return _log_tail(connection, self.layout, lines)
        finally:
            connection.close()


class _Steps:
    """The steps on one instance, sharing its connection."""

    def __init__(
        self,
        deployer: Deployer,
        connection: Any,
        instance: Instance,
        release: Release,
        result: InstanceRelease,
    ) -> None:
        self.deployer = deployer
        self.spec = deployer.spec
        self.layout = deployer.layout
        self.connection = connection
        self.instance = instance
        self.release = release
        self.result = result
        self.folder = self.layout.release(release.release_id)

    def timed(self, name: str, step: Callable[[], None]) -> None:
        started = time.monotonic()
        step()
        self.result.seconds[name] = round(time.monotonic() - started, 3)

    def run(self, command: str, *, step: str, with_log: bool = False) -> str:
        """Run `command`; on failure raise DeployFailed with its output's tail."""
        done = self.connection.run(command, hide=True, warn=True, in_stream=False)
        if done.exited != 0:
            details = [f"{EXIT_CODE}{done.exited}", f"{COMMAND}{_short(command)}"]
            details += [f"{STDERR}{line}" for line in _tail(done.stderr or done.stdout)]
            if with_log:
                details += [f"{APP_LOG}{line}" for line in _log_tail(self.connection, self.layout)]
            raise DeployFailed(
                f"{step} failed on {self.instance.instance_id} ({self.instance.address})",
                where=f"deploy, {step} on {self.instance.instance_id}",
                cause=(_tail(done.stderr or done.stdout, 1) or [f"exit code {done.exited}"])[0],
                details=details,
                next_step="fix the cause in the app, then `hivemind retry "
                f"{self.deployer.deployment_id}` (it resumes at the deploy stage)",
            )
        return str(done.stdout)

    def put(self, local: str | io.BytesIO, remote: str) -> None:
        self.connection.put(local, remote)

    def upload(self) -> None:
        layout, folder = self.layout, self.folder
        staged = f"/tmp/hivemind-{self.release.release_id}.tar.gz"
        self.put(str(self.release.archive), staged)
        self.run(
            f"sudo install -d -m 0755 {layout.root}/releases {layout.root}/shared "
            f"/var/log/{self.spec.app.name} && sudo rm -rf {folder} && "
            f"sudo install -d -m 0755 {folder} && sudo tar -xzf {staged} -C {folder} && "
            f"rm -f {staged}",
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
        self.run(f"cd {self.folder} && sudo bash -c {shlex.quote(script)}", step="build")

    def start(self) -> None:
        layout, app = self.layout, self.spec.app
        outputs = self.release.outputs
        values = {
            "app_name": app.name,
            "deployment_id": self.deployer.deployment_id,
            "app_root": layout.root,
            "app_user": app.name.replace("-", "_"),
            "env_file": layout.env_file,
            "log_file": layout.log_file,
            "release_dir": layout.current,
            "start_command": app.start_command,
        }
        plain = [("PORT", str(app.port))] if app.port is not None else []
        plain += [(name, value) for name, value in app.env.items() if name != "PORT"]
        secret_arn = outputs.get("DatabaseSecretArn", "")
        env_script = render(
            "app_env.sh.j2",
            app_name=app.name,
            env_file=layout.env_file,
            plain=[shlex.quote(_environment_line(name, value)) for name, value in plain],
            secret_arn=shlex.quote(secret_arn) if secret_arn else "",
            region=shlex.quote(self.spec.region),
            db_host=shlex.quote(outputs.get("DatabaseEndpoint", "")),
            db_port=shlex.quote(outputs.get("DatabasePort", "")),
            db_name=shlex.quote(DATABASE_NAME),
            db_scheme=shlex.quote(_SCHEMES.get(self.spec.database.engine, "")),
        )
        staging = f"/tmp/hivemind-{self.release.release_id}"
        self.run(f"install -d -m 0700 {staging}", step="start")
        for name, text in (
            ("app.env.sh", env_script),
            ("app.service", render("app.service.j2", **values)),
            ("start.sh", render("start.sh.j2", **values)),
        ):
            self.put(io.BytesIO(text.encode()), f"{staging}/{name}")
        folder = self.folder
        self.run(
            f"sudo bash {staging}/app.env.sh && "
            f"sudo install -D -m 0755 {staging}/start.sh {folder}/.hivemind/start.sh && "
            f"sudo install -m 0644 {staging}/app.service {layout.unit} && rm -rf {staging}",
            step="configure",
        )
        # The `current` link moves in one rename: a reader sees the old or the new release.
        self.run(
            f"sudo ln -sfn {folder} {layout.root}/current.next && "
            f"sudo mv -Tf {layout.root}/current.next {layout.current} && "
            f"sudo systemctl daemon-reload && sudo systemctl enable {app.name} && "
            f"sudo systemctl restart {app.name}",
            step="start",
            with_log=True,
        )

    def wait_until_answering(self) -> None:
        port = self.spec.app.port
        if port is None:
            self.run(f"sudo systemctl is-active {self.spec.app.name}", step="start", with_log=True)
            return
        url = f"http://{self.instance.private_ip}:{port}{self.spec.app.health_path}"
        probe = _ANSWERS.format(
            url=url,
            seconds=LOCAL_HEALTH_SECONDS,
            unit=self.spec.app.name,
            restarts=RESTARTS_BEFORE_GIVING_UP,
        )
        self.run(f"python3 -c {shlex.quote(probe)}", step="health check", with_log=True)

    def prune(self) -> None:
        """Keep the newest KEEP_RELEASES releases (release ids sort by time)."""
        root = f"{self.layout.root}/releases"
        listing = self.run(f"ls -1 {root}", step="prune").split()
        keep = sorted(listing)[-KEEP_RELEASES:]
        old = [name for name in listing if name not in keep]
        if old:
            paths = " ".join(f"{root}/{shlex.quote(name)}" for name in old)
            self.run(f"sudo rm -rf {paths}", step="prune")
        self.result.kept_releases = keep


# Waits for any HTTP answer below 500 from the app (the load balancer's check is stricter);
# gives up early on an app that keeps exiting (systemd restarting it, or giving up on it).
_ANSWERS = """
import subprocess, sys, time, urllib.error, urllib.request
deadline = time.time() + {seconds}
last = "no answer"
def restarts():
    shown = subprocess.run(
        ["systemctl", "show", "-p", "NRestarts", "--value", "{unit}"],
        capture_output=True, text=True,
    ).stdout.strip()
    return int(shown) if shown.isdigit() else 0
def failed():
    return subprocess.run(["systemctl", "is-failed", "--quiet", "{unit}"]).returncode == 0
while time.time() < deadline:
    if restarts() >= {restarts} or failed():
        sys.stderr.write(
            "the app keeps exiting: systemd restarted {unit} %d times (last: %s)\\n"
            % (restarts(), last)
        )
        sys.exit(1)
    try:
        with urllib.request.urlopen("{url}", timeout=3) as answer:
            sys.exit(0)
    except urllib.error.HTTPError as error:
        if error.code < 500:
            sys.exit(0)
        last = "HTTP %s" % error.code
    except Exception as error:
        last = str(error)
    time.sleep(0.5)
sys.stderr.write("the app did not answer at {url} within {seconds:.0f} s: %s\\n" % last)
sys.exit(1)
"""


def _log_tail(connection: Any, layout: Layout, lines: int = _TAIL) -> list[str]:
    done = connection.run(
        f"sudo tail -n {lines} {layout.log_file} 2>/dev/null || "
        f"sudo journalctl -u {layout.app} -n {lines} --no-pager",
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
