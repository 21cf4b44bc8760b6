"""`journalctl` on a sandbox host: the journal of the units `systemctl` runs.

    journalctl [-u UNIT]... [-n N] [-o short|short-iso|cat] [--no-pager] [--no-hostname]
               [--since ...] [--until ...] [-b] [-x] [-e] [-q]

Without `-u`, every unit's entries, merged by time. `--since`, `--until`, `-b`, `-x` and
`-e` are accepted and ignored (a sandbox host has booted once and keeps little).
`--follow` is refused: nothing would ever end it over a non-interactive SSH command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from hivemind.sandbox.host_tools import HOSTNAME_VARIABLE, NotOnHost, host_dir
from hivemind.sandbox.host_tools.units import (
    Entry,
    UnitError,
    format_entry,
    journal_dir,
    read_journal,
    unit_name,
)

_IGNORED_FLAGS = {"--no-pager", "-b", "--boot", "-x", "--catalog", "-e", "--pager-end", "--utc"}
_IGNORED_VALUED = {"--since", "-S", "--until", "-U"}
_OUTPUTS = ("short", "short-iso", "cat")


class Usage(Exception):
    """A command line this journalctl does not accept."""


def _values(argv: list[str]) -> Iterator[tuple[str, str | None]]:
    """(option, value) pairs; a value given inline (`-n5`, `--lines=5`) or as the next word."""
    words = iter(argv)
    valued = {"-u", "--unit", "-n", "--lines", "-o", "--output"} | _IGNORED_VALUED
    for word in words:
        name, eq, inline = word.partition("=")
        if word.startswith("--") and name in valued:
            yield name, inline if eq else next(words, None)
        elif word[:2] in valued and len(word) > 2 and word[1] != "-":
            yield word[:2], word[2:]
        elif word in valued:
            yield word, next(words, None)
        else:
            yield word, None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    units: list[str] = []
    lines: int | None = None
    output, quiet, hostname_shown = "short", False, True
    try:
        for option, value in _values(args):
            if option in ("-u", "--unit", "-n", "--lines", "-o", "--output") and value is None:
                raise Usage(f"option '{option}' requires an argument")
            if option in ("-u", "--unit"):
                units.append(unit_name(str(value)))
            elif option in ("-n", "--lines"):
                if value == "all":
                    lines = None
                elif value is not None and value.isdigit():
                    lines = int(value)
                else:
                    raise Usage(f"Failed to parse lines '{value}'")
            elif option in ("-o", "--output"):
                if value not in _OUTPUTS:
                    raise Usage(f"the sandbox's journalctl prints only -o {', '.join(_OUTPUTS)}")
                output = str(value)
            elif option in ("-q", "--quiet"):
                quiet = True
            elif option == "--no-hostname":
                hostname_shown = False
            elif option in ("-f", "--follow"):
                raise Usage("--follow is not supported by the sandbox's journalctl")
            elif option in _IGNORED_FLAGS or option in _IGNORED_VALUED:
                continue
            else:
                raise Usage(f"unrecognized option '{option}'")
        host = host_dir()
    except (Usage, UnitError, NotOnHost) as error:
        print(f"journalctl: {error}", file=sys.stderr)
        return 1
    if not units:
        units = sorted(path.stem for path in journal_dir(host).glob("*.log"))
    entries: list[Entry] = []
    for unit in units:
        entries.extend(read_journal(host, unit))
    entries.sort(key=lambda entry: entry.time)
    if lines is not None:
        entries = entries[-lines:] if lines else []
    if not entries:
        if not quiet:
            print("-- No entries --")
        return 0
    hostname = os.environ.get(HOSTNAME_VARIABLE, "localhost")
    for entry in entries:
        text = format_entry(entry, hostname, output)
        if not hostname_shown and output != "cat":
            text = text.replace(f" {hostname} ", " ", 1)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
