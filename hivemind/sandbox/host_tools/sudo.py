"""`sudo` on a sandbox host: a host has one user, so sudo drops its options and runs the
command as it is.

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

_FLAGS = frozenset("nEHSkAbPe")  # options without a value: all meaningless on one user
_VALUED = frozenset("ugpCDhrtTUR")  # options with a value (-u USER, -g GROUP, ...)
_LONG_VALUED = {"--user", "--group", "--prompt", "--chdir", "--close-from", "--host", "--role"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
USAGE = "usage: sudo [-nEHS] [-u user] [-g group] [--] command [arg ...]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    shell = False
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
                args.pop(0)
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
                    args.pop(0)
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
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"sudo: {command[0]}: command not found", file=sys.stderr)
    except PermissionError:
        print(f"sudo: unable to execute {command[0]}: Permission denied", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
