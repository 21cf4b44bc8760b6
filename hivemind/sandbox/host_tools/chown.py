"""`chown` on a sandbox host: it refuses what GNU chown (coreutils 8.32, Amazon Linux
2023's) refuses on an instance, and otherwise changes nothing, because a host has one real
user (see `users`).

    chown [-cfhvR] [-H|-L|-P] [--from=CURRENT] [--no-dereference] [--] OWNER[:[GROUP]] FILE...
    chown [OPTION]... :GROUP FILE...

Refused as on an instance, with chown's words and exit status 1:

* an owner or a group the instance lacks: "chown: invalid user: 'NAME'" (the whole
  OWNER[:GROUP] argument quoted, as chown does) or "chown: invalid group: 'OWNER:GROUP'";
* a file that does not exist: "chown: cannot access 'FILE': No such file or directory";
* run as anyone but root (without sudo): "chown: changing ownership of 'FILE': Operation
  not permitted", unless the owner stays the runner's own (ec2-user to ec2-user).
"""

from __future__ import annotations

import os
import sys

from hivemind.sandbox.host_tools import host_dir, users

USAGE = "Usage: chown [OPTION]... [OWNER][:[GROUP]] FILE..."
_FLAGS = frozenset("cfhvRHLP")
_LONG_FLAGS = frozenset(
    {
        "--changes", "--silent", "--quiet", "--verbose", "--recursive", "--no-dereference",
        "--dereference", "--preserve-root", "--no-preserve-root",
    }
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    operands: list[str] = []
    options_done = False
    for word in args:
        if options_done or not word.startswith("-") or word == "-":
            operands.append(word)
        elif word == "--":
            options_done = True
        elif word.startswith("--"):
            name = word.split("=", 1)[0]
            if name not in _LONG_FLAGS and name not in ("--from", "--reference"):
                print(f"chown: unrecognized option '{word}'\n{USAGE}", file=sys.stderr)
                return 1
            if name == "--reference":
                print("chown: --reference is not supported on a sandbox host", file=sys.stderr)
                return 1
        elif any(letter not in _FLAGS for letter in word[1:]):
            bad = next(letter for letter in word[1:] if letter not in _FLAGS)
            print(f"chown: invalid option -- '{bad}'\n{USAGE}", file=sys.stderr)
            return 1
    if len(operands) < 2:
        missing = "missing operand" if not operands else f"missing operand after '{operands[0]}'"
        print(f"chown: {missing}\n{USAGE}", file=sys.stderr)
        return 1
    spec, files = operands[0], operands[1:]
    owner, separator, group = spec.partition(":") if ":" in spec else spec.partition(".")
    host = host_dir()
    if owner and not users.is_known(owner, host):
        print(f"chown: invalid user: '{spec}'", file=sys.stderr)
        return 1
    if separator and group and not users.is_known(group, host):
        print(f"chown: invalid group: '{spec}'", file=sys.stderr)
        return 1
    runner = users.running_as()
    status = 0
    for name in files:
        if not os.path.lexists(name):
            print(f"chown: cannot access '{name}': No such file or directory", file=sys.stderr)
            status = 1
        elif runner != "root" and {owner or runner, group or runner} != {runner}:
            print(
                f"chown: changing ownership of '{name}': Operation not permitted",
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
