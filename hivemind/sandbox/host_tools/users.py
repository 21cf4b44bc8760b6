"""The users of a sandbox host, and who a command on it runs as.

A sandbox host has one real user (the daemon's): every command and service runs as it.
What the host does keep is who each command would run as on an EC2 instance, so that
what AWS refuses, the host refuses too:

* **The users an instance has**: `root` and `ec2-user` (Amazon Linux 2023's), and every
  user its user data creates with `useradd` (`users_created`): the daemon reads the user
  data when the instance starts and writes the list to `<host dir>/users`.
* **Who a command runs as**: `ec2-user` over SSH; `sudo` runs its command as root, or as
  `-u USER`, and says so in `RUN_AS_VARIABLE` for what it runs. `sudo -u` with a user the
  instance lacks fails as sudo does ("sudo: unknown user NAME"); `chown` to a user or
  group the instance lacks fails as chown does ("chown: invalid user: 'NAME'"), and a
  `chown` run as anyone but root fails with "Operation not permitted" (see `chown`).
* **sudo's log**: on Amazon Linux 2023 sudo logs each command to the journal
  (`ec2-user : PWD=/ ; USER=root ; COMMAND=/usr/bin/systemctl restart app`); a host
  keeps the same lines in `<host dir>/sudo.log` (`SUDO_LOG`), so a test can see which
  user a deploy's build ran as.

Ownership itself is not kept: on one real user, every file is the daemon's.

Sources of the words: sudo's sudoers plugin logs and prints `unknown user %s` for a run-as
user without a passwd entry (sudo 1.9, plugins/sudoers/sudoers.c), and writes its log
line as `user : PWD=... ; USER=... ; COMMAND=...`; GNU coreutils' chown says
`invalid user: %s` / `invalid group: %s` (lib/userspec.c, the argument quoted); systemd
fails a service whose `User=` does not resolve with exit status 217/USER ("Failed to
determine the user credentials", systemd.exec(5), "Process Exit Codes").

Standard library only: `sudo` imports this at every call.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

SSH_USER = "ec2-user"
BUILT_IN = ("root", SSH_USER)  # an Amazon Linux 2023 instance's users a deploy may name
RUN_AS_VARIABLE = "HIVEMIND_SANDBOX_RUN_AS"  # who the process would run as on an instance
USERS_FILE = "users"  # in the host's folder: one user name per line
SUDO_LOG = "sudo.log"  # in the host's folder

# useradd's options that take a value (shadow-utils 4.9, Amazon Linux 2023's).
_USERADD_VALUED = frozenset(
    {
        "-b", "--base-dir", "-c", "--comment", "-d", "--home-dir", "-e", "--expiredate",
        "-f", "--inactive", "-g", "--gid", "-G", "--groups", "-k", "--skel", "-K", "--key",
        "-p", "--password", "-R", "--root", "-P", "--prefix", "-s", "--shell", "-u", "--uid",
        "-Z", "--selinux-user", "--btrfs-subvolume-home",
    }
)  # fmt: skip
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "{", "}", "!"})


def users_created(scripts: Iterable[str]) -> list[str]:
    """The users `useradd` creates in these shell scripts (an instance's user data), in
    order: each `useradd` command's one operand, after its options (comments, quoting
    and `;`, `&&`, `||`, `|` between commands as the shell reads them, line by line)."""
    found: list[str] = []
    for script in scripts:
        for line in script.splitlines():
            for command in simple_commands(line):
                if command[0] == "useradd":
                    name = _useradd_operand(command[1:])
                    if name and name not in found:
                        found.append(name)
    return found


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line, each as its words (comments, quoting and
    the separators `;`, `&&`, `||`, `|`, `&`, `( )`, `{ }`, `!` as the shell reads
    them); none for a line with an unterminated quote."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # an unterminated quote: not a line this reads
        return []
    commands: list[list[str]] = [[]]
    for word in words:
        if word in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def _useradd_operand(words: list[str]) -> str | None:
    operand = None
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in _USERADD_VALUED
        else:
            operand = word
    return operand


def write_users(host_dir: Path, created: Iterable[str]) -> None:
    names = list(dict.fromkeys([*BUILT_IN, *created]))
    (host_dir / USERS_FILE).write_text("".join(f"{name}\n" for name in names), "utf-8")


def known_users(host_dir: Path) -> set[str]:
    try:
        text = (host_dir / USERS_FILE).read_text("utf-8")
    except OSError:
        return set(BUILT_IN)
    return {*BUILT_IN, *(line.strip() for line in text.splitlines() if line.strip())}


def is_known(name: str, host_dir: Path) -> bool:
    """A user (or its group: `useradd --user-group`) the instance has; `#UID` and numeric
    ids are taken as given, as sudo and chown take them."""
    return name.lstrip("#").isdigit() or name in known_users(host_dir)


def running_as() -> str:
    """Who this process would run as on an instance: ec2-user unless sudo said."""
    return os.environ.get(RUN_AS_VARIABLE) or SSH_USER


def log_sudo(host_dir: Path, user: str, command: list[str]) -> None:
    """Append sudo's log line for `command`, run as `user`, as Amazon Linux's sudo logs it."""
    line = f"{running_as()} : PWD={os.getcwd()} ; USER={user} ; COMMAND={shlex.join(command)}\n"
    with open(host_dir / SUDO_LOG, "a", encoding="utf-8") as log:
        log.write(line)
