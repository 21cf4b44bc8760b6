"""`sudo` on a sandbox host: a host has one real user, so sudo drops its options and runs
the command as it is, but as far as the instance is concerned (see `users`) as root or as
`-u USER`: a user the instance lacks is refused as sudo refuses it, and every command is
logged with the user it runs as.

    sudo [-n] [-E] [-H] [-S] [-k] [-u USER] [-g GROUP] [--preserve-env[=LIST]] [--]
         [NAME=VALUE]... COMMAND [ARG]...
    sudo -s|-i [COMMAND [ARG]...]      (through bash, as sudo's shell options do)

`NAME=VALUE` words before the command are set in its environment, as sudo sets them.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from hivemind.sandbox.host_tools import NotOnHost, host_dir, users

_FLAGS = frozenset("nEHSkAbPe")  # options without a value: all meaningless on one user
_VALUED = frozenset("ugpCDhrtTUR")  # options with a value (-u USER, -g GROUP, ...)
_LONG_VALUED = {"--user", "--group", "--prompt", "--chdir", "--close-from", "--host", "--role"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
USAGE = "usage: sudo [-nEHS] [-u user] [-g group] [--] command [arg ...]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    shell = False
    user = "root"
    while args and args[0].startswith("-") and args[0] != "-":
        word = args.pop(0)
        if word == "--":
            break
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            if name in ("--shell", "--login"):
                shell = True
            elif name in _LONG_VALUED and "=" not in word:
                if not args:
                    print(f"sudo: option '{name}' requires an argument\n{USAGE}", file=sys.stderr)
                    return 1
                value = args.pop(0)
                user = value if name == "--user" else user
            elif name == "--user":
                user = word.split("=", 1)[1]
            continue
        letters = word[1:]
        for index, letter in enumerate(letters):
            if letter in ("s", "i"):
                shell = True
            elif letter in _VALUED:
                if index == len(letters) - 1:  # -u USER; else -uUSER, the rest is the value
                    if not args:
                        print(
                            f"sudo: option requires an argument -- '{letter}'\n{USAGE}",
                            file=sys.stderr,
                        )
                        return 1
                    value = args.pop(0)
                else:
                    value = letters[index + 1 :]
                user = value if letter == "u" else user
                break
            elif letter not in _FLAGS:
                print(f"sudo: invalid option -- '{letter}'\n{USAGE}", file=sys.stderr)
                return 1
    env = dict(os.environ)
    while args and _ASSIGNMENT.match(args[0]):
        key, value = args.pop(0).split("=", 1)
        env[key] = value
    if shell:
        command = ["bash", "-c", shlex.join(args)] if args else ["bash"]
    elif args:
        command = args
    else:
        print(USAGE, file=sys.stderr)
        return 1
    try:
        host = host_dir()
    except NotOnHost:
        host = None
    if host is not None:
        if not users.is_known(user, host):
            print(f"sudo: unknown user {user}", file=sys.stderr)
            return 1
        users.log_sudo(host, user, command)
    env[users.RUN_AS_VARIABLE] = user
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"sudo: {command[0]}: command not found", file=sys.stderr)
    except PermissionError:
        print(f"sudo: unable to execute {command[0]}: Permission denied", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
