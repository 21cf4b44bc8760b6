"""Where an app lives on its instances, and under which names: one place for the paths,
the user and the systemd unit that the instances' user data creates
(`templates/user_data.sh.j2`), the deploy writes (`deployer.release`), the CloudWatch
agent ships logs from, and the report and Ops name.

Every name carries HiveMind's prefix, so no app name can take a system's: an app called
`sshd`, `root` or `systemd-journald` runs as the user `hm-sshd` under the unit
`hivemind-sshd.service` from `/opt/hivemind/sshd`, and never overwrites
`/etc/systemd/system/sshd.service` or runs as root. (App names are 2-24 lowercase
letters, digits and hyphens, so `hm-<app>` fits Linux's 32-character user names.)

Who owns what, so that nothing the app (or its build) can write is later written
through by root:

* `/opt/hivemind/<app>`, its `releases/` and `shared/` (the environment file, 0600):
  root, 0755. The deploy unpacks each release as root into a folder of its own, hands
  that one folder to the app's user for the build, and takes it back (root-owned, no
  group or other write) before the service starts from it: the app runs from code it
  cannot change.
* `/opt/hivemind/<app>/home`: the app user's home (caches of pip, npm, Maven, Go), its
  own.
* `/var/log/hivemind/<app>`: root, 0755. systemd opens the app's log file there as root
  (`StandardOutput=append:`), in a folder the app cannot write, so the app cannot swap
  the file for a link to a file of root's.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_PREFIX = "hm-"
UNIT_PREFIX = "hivemind-"
ROOT = "/opt/hivemind"
LOG_ROOT = "/var/log/hivemind"


@dataclass(frozen=True)
class Layout:
    """Where a release lives on an instance, and the names it runs under."""

    app: str

    @property
    def user(self) -> str:
        """The unprivileged user that builds and runs the app."""
        return f"{USER_PREFIX}{self.app}"

    @property
    def unit_name(self) -> str:
        """The systemd service's name (`systemctl restart <unit_name>`)."""
        return f"{UNIT_PREFIX}{self.app}"

    @property
    def unit(self) -> str:
        return f"/etc/systemd/system/{self.unit_name}.service"

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.app}"

    @property
    def home(self) -> str:
        return f"{self.root}/home"

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{release_id}"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"

    @property
    def env_file(self) -> str:
        return f"{self.shared}/app.env"

    @property
    def log_dir(self) -> str:
        return f"{LOG_ROOT}/{self.app}"

    @property
    def log_file(self) -> str:
        return f"{self.log_dir}/app.log"

    @property
    def log_files(self) -> str:
        """What the CloudWatch agent ships to the deployment's log group."""
        return f"{self.log_dir}/*.log"
