"""What runs *on* a sandbox host: the programs an Amazon Linux 2023 instance has and a
laptop lacks, run inside the host's mount namespace (see `hivemind.sandbox.hosts`).

* `sudo`, `systemctl`, `journalctl`, `aws`, `chown`: the executables in `<host dir>/bin`,
  first on the PATH of every command the host runs.
* `users`: the users the instance has and who a command runs as (what `sudo -u` and
  `chown` check), and sudo's log.
* `supervise`: the detached process `systemctl start` leaves behind for one service:
  it runs the service, restarts it as its unit asks and writes its journal.
* `units`: unit files, service state and the journal, shared by the tools, the
  supervisor and the daemon that stops the host.
* `namespace`: the process that holds a host's mount namespace.

Each module imports only the standard library (plus boto3 in `aws`): every `sudo` on a
host is one Python start-up, and it should stay cheap.

The sandbox gives every process on a host (commands and services) the variables below,
so a tool knows which host it runs on without asking the daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

import hivemind

HOST_DIR_VARIABLE = "HIVEMIND_SANDBOX_HOST_DIR"  # the host's folder on the real filesystem
ADDRESS_VARIABLE = "HIVEMIND_SANDBOX_HOST_ADDRESS"  # its one IP address (private = public)
HOSTNAME_VARIABLE = "HIVEMIND_SANDBOX_HOSTNAME"  # ip-127-1-2-1, as EC2 names it
INSTANCE_VARIABLE = "HIVEMIND_SANDBOX_INSTANCE_ID"
PATH_VARIABLE = "HIVEMIND_SANDBOX_PATH"  # the host's PATH, which services get too
# The variables that make a process part of the host: every service gets them as well.
HOST_VARIABLES = (HOST_DIR_VARIABLE, ADDRESS_VARIABLE, HOSTNAME_VARIABLE, INSTANCE_VARIABLE)
# What stands in for the instance role and the metadata service (see `hosts`).
AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)
# What the instance's own setup gives its processes: where its X-Ray daemon listens (see
# `hivemind.sandbox.xray_daemon`), when it runs one.
XRAY_DAEMON_VARIABLE = "AWS_XRAY_DAEMON_ADDRESS"
SETUP_VARIABLES = (XRAY_DAEMON_VARIABLE,)

TOOLS = ("sudo", "systemctl", "journalctl", "aws", "chown")
HOME = "/opt"  # ec2-user's home on a sandbox host: inside the host, and writable


class NotOnHost(Exception):
    """A host tool was run outside a sandbox host."""


def host_dir() -> Path:
    """The folder of the host this process runs on."""
    value = os.environ.get(HOST_DIR_VARIABLE)
    if not value:
        raise NotOnHost(
            f"{HOST_DIR_VARIABLE} is not set: this program runs on a HiveMind sandbox host only"
        )
    return Path(value)


def instance_environment() -> dict[str, str]:
    """The variables of this process that every process on the host gets (`HOST_VARIABLES`,
    `AWS_VARIABLES`, `SETUP_VARIABLES` and the host's PATH)."""
    names = (*HOST_VARIABLES, *AWS_VARIABLES, *SETUP_VARIABLES, PATH_VARIABLE)
    return {name: os.environ[name] for name in names if name in os.environ}


def source_root() -> str:
    """The folder hivemind is imported from: what a host's Python processes put on their
    path to run the host's tools (they start without `site`, see `hosts`)."""
    return str(Path(hivemind.__file__).resolve().parents[1])
