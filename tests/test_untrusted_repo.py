"""A repository is untrusted input, its `.git/config` included: packing a release runs
nothing the repository configures. Each fixture is a repository that leaves a marker
file when git runs what it names; the test first shows that git's porcelain would run
it, then that HiveMind's packing does not, and still packs exactly what is committed."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hivemind.deployer.source import package_source

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_IDENTITY},
        capture_output=True,
        text=True,
        check=False,
    )


def hostile_repo(root: Path, marker: Path) -> Path:
    """An app committed with a symbolic link and an executable, whose .git/config names
    a program for the fsmonitor hook, for a clean/smudge filter `.gitattributes` applies
    to every file, and for `git archive`'s tar.gz format: each would create `marker`."""
    repo = root / "app"
    repo.mkdir()
    (repo / "app.py").write_text("print('hello')\n")
    (repo / "run.sh").write_text("#!/bin/sh\nexec python3 app.py\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "current").symlink_to("app.py")
    assert git(repo, "init", "-q", "-b", "main").returncode == 0
    assert git(repo, "add", "-A").returncode == 0
    assert git(repo, "commit", "-q", "-m", "app").returncode == 0
    touch = f"touch {marker}"
    (repo / ".gitattributes").write_text("* filter=evil\n")
    for key, value in (
        ("core.fsmonitor", f"{touch}; true"),
        ("filter.evil.clean", f"sh -c '{touch}; cat'"),
        ("filter.evil.smudge", f"sh -c '{touch}; cat'"),
        ("tar.tar.gz.command", f"sh -c '{touch}; gzip -cn'"),
    ):
        assert git(repo, "config", "--local", key, value).returncode == 0
    assert git(repo, "add", ".gitattributes").returncode == 0
    assert git(repo, "commit", "-q", "-m", "attributes").returncode == 0
    marker.unlink(missing_ok=True)  # committing ran the clean filter already
    return repo


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as packed:
        return {m.name: m for m in packed.getmembers()}


def test_gits_porcelain_would_run_what_the_repository_names(tmp_path: Path) -> None:
    """The fixture is hostile: plain `git status` and `git archive` run its programs."""
    marker = tmp_path / "ran"
    repo = hostile_repo(tmp_path, marker)
    (repo / "app.py").write_text("print('changed')\n")  # status must compare contents
    git(repo, "status", "--porcelain")
    assert marker.exists()
    marker.unlink()
    git(repo, "archive", "--format=tar.gz", "-o", str(tmp_path / "out.tgz"), "HEAD")
    assert marker.exists()


def test_packing_a_hostile_repository_runs_nothing_and_packs_what_is_committed(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    repo = hostile_repo(tmp_path, marker)

    clean = package_source(repo, ".", tmp_path / "release")
    assert not marker.exists()
    assert clean.note == ""  # nothing uncommitted
    found = members(clean.archive)
    assert set(found) == {"app.py", "run.sh", "current", ".gitattributes"}
    assert found["run.sh"].mode == 0o755 and found["app.py"].mode == 0o644
    assert found["current"].issym() and found["current"].linkname == "app.py"
    with tarfile.open(clean.archive) as packed:
        handle = packed.extractfile("app.py")
        assert handle is not None and handle.read() == b"print('hello')\n"

    (repo / "app.py").write_text("print('changed')\n")
    dirty = package_source(repo, ".", tmp_path / "release")
    assert not marker.exists()
    assert "uncommitted changes are not deployed" in dirty.note
    with tarfile.open(dirty.archive) as packed:
        handle = packed.extractfile("app.py")
        assert handle is not None and handle.read() == b"print('hello')\n"  # HEAD's

    (repo / "app.py").write_text("print('hello')\n")
    (repo / "new.txt").write_text("not committed\n")
    untracked = package_source(repo, ".", tmp_path / "release")
    assert "uncommitted changes" in untracked.note and "new.txt" not in members(untracked.archive)

    tagged = git(repo, "tag", "v1")
    assert tagged.returncode == 0
    at_ref = package_source(repo, ".", tmp_path / "release", ref="v1")
    assert not marker.exists()
    assert set(members(at_ref.archive)) == set(found)


@pytest.mark.parametrize("subdir", ["web"])
def test_a_subfolder_is_packed_from_its_own_tree(tmp_path: Path, subdir: str) -> None:
    marker = tmp_path / "ran"
    repo = hostile_repo(tmp_path, marker)
    (repo / subdir).mkdir()
    (repo / subdir / "index.js").write_text("console.log(1)\n")
    assert git(repo, "add", "-A").returncode == 0
    assert git(repo, "commit", "-q", "-m", "web").returncode == 0
    marker.unlink(missing_ok=True)
    packed = package_source(repo, subdir, tmp_path / "release")
    assert not marker.exists()
    assert set(members(packed.archive)) == {"index.js"} and packed.note == ""
    with tarfile.open(fileobj=io.BytesIO(packed.archive.read_bytes())) as archive:
        handle = archive.extractfile("index.js")
        assert handle is not None and handle.read() == b"console.log(1)\n"


BILLION_LAUGHS = """\
tags:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def flask_app(root: Path) -> Path:
    repo = root / "app"
    repo.mkdir()
    (repo / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    (repo / "requirements.txt").write_text("flask\n")
    return repo


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda repo, outside: (repo / "hivemind.yaml").write_text(BILLION_LAUGHS),
         "aliases expand to more than"),
        (lambda repo, outside: (repo / "hivemind.yaml").symlink_to(outside),
         "is a symbolic link out of the repository"),
        (lambda repo, outside: (repo / "hivemind.yaml").mkdir(), "is not a file"),
        (lambda repo, outside: (repo / "hivemind.yaml").write_text("tags: {}\n" + "#" * 70_000),
         "a settings file is at most"),
    ],
    ids=["alias-bomb", "symlink-out", "directory", "oversized"],
)  # fmt: skip
def test_a_hostile_hivemind_yaml_is_refused_in_one_line(
    tmp_path: Path, make: object, said: str
) -> None:
    from harness import run_cli

    outside = tmp_path / "secret.yaml"
    outside.write_text("app:\n  port: 1234\n")
    repo = flask_app(tmp_path)
    make(repo, outside)  # type: ignore[operator]
    result = run_cli("spec", "show", str(repo))
    assert result.returncode == 2, result.stdout[-500:] + result.stderr[-500:]
    assert said in result.stderr
    assert len(result.stdout) + len(result.stderr) < 5_000


def test_a_gitignore_that_leads_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    from hivemind.recon.files import RepoFiles

    outside = tmp_path / "rules"
    outside.write_text("*.py\n")
    repo = flask_app(tmp_path)
    (repo / ".gitignore").symlink_to(outside)
    assert "app.py" in RepoFiles(repo).files  # the outside rules did not apply
    (repo / ".gitignore").unlink()
    (repo / ".gitignore").write_text("*.py\n")
    assert "app.py" not in RepoFiles(repo).files  # the repository's own do


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--health-path", "/health'); import os; os.system('touch /tmp/x"),
        ("--health-path", '/a"b'),
        ("--health-path", "/a b"),
        ("--health-path", "/a`id`"),
        ("--runtime-version", "3.\u0661\u0662"),  # Arabic-Indic digits
        ("--runtime-version", "\uff13"),  # a full-width digit
        ("--ssh-cidr", "0.0.0.0/1"),  # wider than a /16 without --allow-wide-ssh
        ("--ssh-cidr", "2001:db8::/32"),  # wider than a /48
    ],
)
def test_a_flag_value_no_instance_could_take_as_text_is_refused(
    tmp_path: Path, flag: str, value: str
) -> None:
    from harness import run_cli

    repo = flask_app(tmp_path)
    result = run_cli("spec", "show", str(repo), flag, value)
    assert result.returncode == 2, result.stdout[-500:] + result.stderr[-500:]
    assert len(result.stderr.strip().splitlines()) <= 4, result.stderr


def test_the_health_probe_takes_its_values_as_data() -> None:
    """Whatever the health path holds, the probe's program is the same text: its values
    arrive as one JSON argument, quoted for the shell."""
    from hivemind.deployer import release

    assert "{url}" not in release._ANSWERS and "given = json.loads(sys.argv[1])" in release._ANSWERS


def test_a_wide_ssh_range_is_taken_when_the_operator_says_so(tmp_path: Path) -> None:
    from harness import run_cli

    repo = flask_app(tmp_path)
    args = ("spec", "show", str(repo), "--stage-1", "--ssh-cidr", "10.0.0.0/8", "--json")
    assert run_cli(*args).returncode == 2
    shown = run_cli(*args, "--allow-wide-ssh")
    assert shown.returncode == 0, shown.stderr
    assert '"ssh_cidr": "10.0.0.0/8"' in shown.stdout


def test_a_deployment_id_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    from harness import run_cli

    result = run_cli("status", "shop-abcdefghij\n", env={"HIVEMIND_HOME": str(tmp_path)})
    assert result.returncode == 2 and "is not a deployment id" in result.stderr


def test_a_report_into_a_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    from harness import make_spec, run_cli

    from hivemind.records import RecordStore

    home = tmp_path / "home"
    record = RecordStore(home / "deployments").create(
        make_spec("stage-1", "none", False), "shop-abcdefghij", "hivemind-shop-abcdefghij"
    )
    missing = tmp_path / "no-such-folder" / "report.md"
    result = run_cli(
        "report", record.deployment_id, "-o", str(missing), env={"HIVEMIND_HOME": str(home)}
    )
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not missing.parent.exists()


def test_one_unreadable_record_does_not_hide_the_others(tmp_path: Path) -> None:
    import json

    from harness import make_spec, run_cli

    from hivemind.records import RecordStore

    home = tmp_path / "home"
    store = RecordStore(home / "deployments")
    store.create(make_spec("stage-1", "none", False), "shop-abcdefghij", "hivemind-shop-abcdefghij")
    broken = store.create(
        make_spec("stage-1", "none", False), "shop-bbbbbbbbbb", "hivemind-shop-bbbbbbbbbb"
    )
    broken.state_file.write_text("{ not json")
    env = {"HIVEMIND_HOME": str(home)}
    shown = run_cli("list", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "shop-abcdefghij" in shown.stdout and "shop-bbbbbbbbbb" in shown.stdout
    assert "cannot be read" in shown.stdout
    listed = json.loads(run_cli("list", "--json", env=env).stdout)
    assert {e["deployment_id"]: e["status"] for e in listed}["shop-bbbbbbbbbb"] == "unreadable"


def test_credentials_in_a_git_url_are_never_printed_or_recorded(tmp_path: Path) -> None:
    from harness import run_cli

    from hivemind.recon.source import redact_url

    assert redact_url("https://me:s3cret@example.com/a/b.git") == "https://example.com/a/b.git"
    assert redact_url("https://tok@example.com:8443/b") == "https://example.com:8443/b"
    assert redact_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    origin = flask_app(tmp_path)
    assert git(origin, "init", "-q", "-b", "main").returncode == 0
    assert git(origin, "add", "-A").returncode == 0
    assert git(origin, "commit", "-q", "-m", "app").returncode == 0
    # file:// takes no credentials, so a wrong host shows what a failed clone prints.
    secret = "s3cret-token"
    url = f"https://user:{secret}@127.0.0.1:9/nowhere.git"
    env = {"HIVEMIND_HOME": str(tmp_path / "home"), "HIVEMIND_CACHE_DIR": str(tmp_path / "c")}
    failed = run_cli("analyze", url, env=env)
    assert failed.returncode != 0
    assert secret not in failed.stdout + failed.stderr
    assert "https://127.0.0.1:9/nowhere.git" in failed.stderr
