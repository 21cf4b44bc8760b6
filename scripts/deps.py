"""Dependency upkeep for uv.lock: take the newest allowed versions, or find out first
which of them would break HiveMind. Run through `scripts/update-deps` and
`scripts/drift-check` (both bootstrap first); standard library only.

update [PACKAGE ...] [--uv VERSION] [--no-test]
    Re-lock this checkout to the newest versions pyproject.toml allows (every package,
    or the named ones), keep the pins beside the lock in step (the build's setuptools
    and wheel; uv's own with --uv), print what moved, then run ./scripts/test.

check [--tier unit|all] [PYTEST ARGS ...]
    The drift check. In a scratch worktree of this checkout (.drift/tree: HEAD plus
    uncommitted changes to tracked files), re-lock every package to the newest allowed
    version and run the suite there, with a cache of its own (.drift/cache), so
    nothing of this checkout changes. When the suite fails, each upgraded package is
    tried alone against the failing tests, and the ones that break them are named:
    "drift: moto 5.2.5 -> 5.2.6 alone fails tests/...". Exit 0: no drift, or none
    that breaks anything; 1: something breaks (named); 2: the check could not run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Upgraded first when the failing package is looked for: the ones HiveMind leans on most.
WATCHED = ("moto", "boto3", "botocore", "aws-cdk-lib", "cdk-nag", "cfn-lint", "constructs")
BUILD_PINS = ("setuptools", "wheel")  # [tool.uv] build-constraint-dependencies
TIERS = {"unit": ["-m", "not sandbox"], "all": []}


@dataclass(frozen=True)
class Change:
    name: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.name} {self.old} -> {self.new}"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def uv() -> str:
    """The uv that scripts/bootstrap installed (the version scripts/uv-requirements.txt pins)."""
    requirements = (REPO / "scripts" / "uv-requirements.txt").read_text(encoding="utf-8")
    found = re.search(r"^uv==([0-9.]+)", requirements, re.MULTILINE)
    assert found, "scripts/uv-requirements.txt pins no uv"
    cache = os.environ.get("HIVEMIND_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hivemind"
    )
    binary = Path(cache) / f"uv-{found.group(1)}" / "bin" / "uv"
    if not binary.exists():
        sys.exit(f"error: {binary} is missing\n  next: run ./scripts/bootstrap first")
    return str(binary)


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    return subprocess.run(command, cwd=cwd, env=env, check=False).returncode


def must(command: list[str], cwd: Path) -> None:
    if run(command, cwd) != 0:
        sys.exit(f"error: {' '.join(command)} failed (in {cwd})")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(project: Path) -> dict[str, str]:
    """name -> version(s) in the project's uv.lock (forks by Python joined with ' | ')."""
    versions: dict[str, list[str]] = {}
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    for package in lock["package"]:
        if "version" in package:
            versions.setdefault(normalized(package["name"]), []).append(package["version"])
    return {name: " | ".join(sorted(set(found))) for name, found in versions.items()}


def changes(before: dict[str, str], after: dict[str, str]) -> list[Change]:
    moved = [
        Change(name, before.get(name, "(new)"), after.get(name, "(gone)"))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
    return sorted(moved, key=lambda c: (c.name not in WATCHED, c.name))


def keep_build_pins_in_step(project: Path) -> None:
    """Point [tool.uv] build-constraint-dependencies at the lock's setuptools and wheel."""
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    versions = locked(project)
    for name in BUILD_PINS:
        text = re.sub(rf'"{name}==[^"]*"', f'"{name}=={versions[name]}"', text)
    pyproject.write_text(text, encoding="utf-8")


def relock(project: Path, packages: list[str] | None) -> None:
    """`uv lock` with every package (None) or the named ones allowed to move up."""
    upgrade = ["--upgrade"] if packages is None else [f"--upgrade-package={p}" for p in packages]
    must([uv(), "lock", "--quiet", *upgrade], project)
    keep_build_pins_in_step(project)
    must([uv(), "lock", "--quiet"], project)  # the pins are part of what the lock checks


def update(args: argparse.Namespace) -> int:
    before = locked(REPO)
    if args.uv:
        pin_uv(args.uv)
    relock(REPO, args.packages or None)
    moved = changes(before, locked(REPO))
    if not moved:
        say("uv.lock already holds the newest allowed versions")
    else:
        say(f"{len(moved)} packages moved:")
        for change in moved:
            print(f"    {change}")
    if args.no_test:
        return 0
    say("Running the suite on the new lock (./scripts/test)")
    status = run([str(REPO / "scripts" / "test")], REPO)
    if status != 0:
        print(
            "error: the suite fails on the new lock.\n"
            "  next: ./scripts/drift-check names the package whose upgrade breaks it; keep "
            "it back (git checkout uv.lock pyproject.toml; ./scripts/update-deps PACKAGE... "
            "for the others) or fix HiveMind for it",
            file=sys.stderr,
        )
        return 1
    say("The suite passes on the new lock: review `git diff uv.lock`, then commit it")
    return 0


def pin_uv(version: str) -> None:
    """Pin another uv: its hash-checked requirements file and [tool.uv] required-version."""
    requirements = REPO / "scripts" / "uv-requirements.txt"
    header = [line for line in requirements.read_text().splitlines() if line.startswith("#")]
    source = REPO / ".drift" / "uv.in"
    source.parent.mkdir(exist_ok=True)
    source.write_text(f"uv=={version}\n")
    compiled = subprocess.run(
        [uv(), "pip", "compile", "--universal", "--generate-hashes", "--no-header",
         "--quiet", str(source)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    requirements.write_text("\n".join(header) + "\n" + compiled, encoding="utf-8")
    pyproject = REPO / "pyproject.toml"
    text = re.sub(
        r'required-version = "==[^"]*"',
        f'required-version = "=={version}"',
        pyproject.read_text(encoding="utf-8"),
    )
    pyproject.write_text(text, encoding="utf-8")
    say(f"uv pinned to {version}: ./scripts/bootstrap installs it at its next run")
    must([str(REPO / "scripts" / "bootstrap")], REPO)


def scratch_tree(drift: Path) -> Path:
    """A worktree of this checkout (HEAD plus uncommitted changes to tracked files)."""
    tree = drift / "tree"
    if tree.exists():
        run(["git", "worktree", "remove", "--force", str(tree)], REPO)
        shutil.rmtree(tree, ignore_errors=True)
    run(["git", "worktree", "prune"], REPO)
    stashed = subprocess.run(
        ["git", "stash", "create"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    must(["git", "worktree", "add", "--quiet", "--detach", str(tree), stashed or "HEAD"], REPO)
    return tree


def failing_tests(junit: Path) -> list[str]:
    """The node ids of the tests that failed or erred, from pytest's JUnit XML."""
    if not junit.exists():
        return []
    failed: list[str] = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        # pytest names a module's tests by its path, dotted: tests.test_sandbox
        path = case.get("classname", "").replace(".", "/") + ".py"
        failed.append(f"{path}::{case.get('name', '')}")
    return sorted(set(failed))


def check(args: argparse.Namespace, pytest_args: list[str]) -> int:
    drift = REPO / ".drift"
    drift.mkdir(exist_ok=True)
    tree = scratch_tree(drift)
    # The scratch run keeps its caches (uv, the CDK CLI, the sandbox's mirror) apart.
    env = {**os.environ, "HIVEMIND_CACHE_DIR": str(drift / "cache")}
    env.pop("VIRTUAL_ENV", None)
    before = locked(tree)
    say("Re-locking every package to its newest allowed version (in .drift/tree)")
    relock(tree, None)
    moved = changes(before, locked(tree))
    if not moved:
        say("No drift: uv.lock holds the newest allowed version of every package")
        return 0
    say(f"{len(moved)} packages have newer allowed versions:")
    for change in moved:
        print(f"    {change}")

    junit = drift / "junit.xml"
    junit.unlink(missing_ok=True)
    selected = [*TIERS[args.tier], *pytest_args]
    say(f"Running the suite on them ({' '.join(['./scripts/test', *selected]) or ''})")
    if run([str(tree / "scripts" / "test"), *selected, f"--junitxml={junit}"], tree, env) == 0:
        say("No drift that breaks anything: ./scripts/update-deps takes the new versions")
        return 0
    failed = failing_tests(junit)
    # Without failed tests, the lint or type check failed (or the set-up): re-run those.
    probe = failed or ["--collect-only", "-q"]
    probe_env = env if not failed else {**env, "HIVEMIND_SKIP_LINT": "1"}
    say(f"The suite fails ({len(failed) or 'lint, types or set-up'})")
    if len(moved) > 1:
        say("Trying each upgrade alone against what failed")
    culprits: list[Change] = moved if len(moved) == 1 else []
    for change in moved if len(moved) > 1 else []:
        must(["git", "checkout", "--quiet", "--", "uv.lock", "pyproject.toml"], tree)
        relock(tree, [change.name])
        if locked(tree).get(change.name) == change.old:
            continue  # it cannot move alone (a dependency holds it back)
        status = run([str(tree / "scripts" / "test"), *probe], tree, probe_env)
        print(f"    {change}: {'fails' if status else 'passes'}", flush=True)
        if status != 0:
            culprits.append(change)
    shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    what = shown or "the lint, type check or set-up (see the log above)"
    if culprits:
        for change in culprits:
            print(f"drift: {change} alone fails {what}", file=sys.stderr)
    else:
        print(
            f"drift: no single upgrade fails alone; together they fail {what}",
            file=sys.stderr,
        )
    print(
        "  next: fix HiveMind for the new version (and re-lock with ./scripts/update-deps), "
        "or narrow its range in pyproject.toml",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/deps.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    updating = commands.add_parser("update", help="re-lock here, then run the suite")
    updating.add_argument("packages", nargs="*", help="only these packages (default: all)")
    updating.add_argument("--uv", metavar="VERSION", help="also pin this uv version")
    updating.add_argument("--no-test", action="store_true", help="do not run the suite")
    checking = commands.add_parser("check", help="the drift check, in a scratch worktree")
    checking.add_argument("--tier", choices=sorted(TIERS), default="all")
    args, rest = parser.parse_known_args(argv)
    if args.command == "update":
        if rest:
            parser.error(f"unknown arguments: {' '.join(rest)}")
        return update(args)
    return check(args, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
