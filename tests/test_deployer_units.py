"""The on-box deploy's parts that need no instance: packing the release, the deploy's
SSH key, reading host keys from console output, QA's checks of a URL."""

from __future__ import annotations

import http.server
import json
import socket
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import make_spec, write_tree

from hivemind import qa
from hivemind.deployer.access import (
    ensure_key_pair,
    host_keys_from_console,
    remove_keys,
    ssh_folder,
)
from hivemind.deployer.source import package_source
from hivemind.errors import BadInputError


def _names(archive: Path) -> set[str]:
    with tarfile.open(archive) as packed:
        return {m.name.removeprefix("./") for m in packed if m.isfile()}


def test_a_plain_folder_is_packed_without_what_gitignore_and_dependencies_exclude(
    tmp_path: Path,
) -> None:
    app = write_tree(
        tmp_path / "app",
        {
            "app.py": "print('hi')\n",
            "templates/index.html": "<p>hi</p>\n",
            ".gitignore": "*.log\nsecrets/\n",
            "debug.log": "noise\n",
            "secrets/key.pem": "no\n",
            "node_modules/x/index.js": "no\n",
            ".venv/pyvenv.cfg": "no\n",
        },
    )
    package = package_source(app, ".", tmp_path / "record")
    assert package.commit is None and package.release_id.endswith("-worktree")
    assert _names(package.archive) == {"app.py", "templates/index.html", ".gitignore"}
    assert package.files == 3


def test_a_git_repository_is_packed_at_head_and_uncommitted_changes_are_named(
    tmp_path: Path,
) -> None:
    repo = write_tree(tmp_path / "repo", {"svc/main.py": "v1\n", "other/x.txt": "x\n"})
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    clean = package_source(repo, "svc", tmp_path / "record")
    assert (clean.commit, clean.note) == (head, "")
    assert clean.release_id.endswith(head[:7])
    assert _names(clean.archive) == {"main.py"}

    (repo / "svc" / "main.py").write_text("v2, not committed\n")
    dirty = package_source(repo, "svc", tmp_path / "record")
    assert "uncommitted changes are not deployed" in dirty.note
    with tarfile.open(dirty.archive) as packed:
        member = packed.extractfile("main.py")
        assert member is not None and member.read() == b"v1\n"


def _history(repo: Path) -> dict[str, str]:
    """A repository with three commits on main (v1 tagged, v2, v3), a branch `next`
    with v4, and main checked out; the commit of each version."""
    write_tree(repo, {"svc/main.py": "v1\n", "README": "r\n"})
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    commits = {}
    for version in ("v1", "v2", "v3"):
        (repo / "svc" / "main.py").write_text(f"{version}\n")
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", version], check=True)
        commits[version] = subprocess.run(
            [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        if version == "v1":
            subprocess.run([*git, "tag", "-a", "release-1", "-m", "first"], check=True)
    subprocess.run([*git, "checkout", "-qb", "next"], check=True)
    (repo / "svc" / "main.py").write_text("v4\n")
    subprocess.run([*git, "commit", "-qam", "v4"], check=True)
    commits["v4"] = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run([*git, "checkout", "-q", "main"], check=True)
    return commits


def _main_py(archive: Path) -> bytes:
    with tarfile.open(archive) as packed:
        member = packed.extractfile("main.py")
        assert member is not None
        return member.read()


def test_a_version_packs_that_commit_tag_or_branch_and_names_the_release_after_it(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    commits = _history(repo)
    (repo / "svc" / "main.py").write_text("not committed\n")
    for ref, version in (
        ("release-1", "v1"),  # an annotated tag: the commit it points to
        (commits["v2"][:10], "v2"),  # a commit, abbreviated
        ("HEAD~1", "v2"),
        ("next", "v4"),  # a branch that is not checked out
        ("main", "v3"),
    ):
        package = package_source(repo, "svc", tmp_path / "record", ref)
        assert package.commit == commits[version], ref
        assert package.release_id.endswith(f"-{commits[version][:7]}")
        assert _main_py(package.archive) == f"{version}\n".encode()
        assert package.files == 1
        assert package.note == ""  # what is uncommitted is not what was asked for
    # The whole repository at a version, when the app is its root.
    whole = package_source(repo, ".", tmp_path / "record", "release-1")
    assert _names(whole.archive) == {"svc/main.py", "README"}


def test_an_unknown_version_is_bad_input_naming_it_and_the_recent_tags_and_branches(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    _history(repo)
    with pytest.raises(BadInputError) as raised:
        package_source(repo, "svc", tmp_path / "record", "release-9")
    error = raised.value
    assert error.exit_code == 2
    assert "'release-9' is not a commit, tag or branch" in error.what
    assert error.cause is not None
    for known in ("release-1", "main", "next"):
        assert known in error.cause
    assert error.next_step is not None and "git fetch" in error.next_step
    assert not (tmp_path / "record" / "release.tar.gz").exists()
    # Something git would read as an option is a version that does not exist, too.
    with pytest.raises(BadInputError, match="is not a commit, tag or branch"):
        package_source(repo, "svc", tmp_path / "record", "--output=/tmp/x")


def test_a_version_without_the_apps_folder_is_bad_input(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _history(repo)
    with pytest.raises(BadInputError, match="has no folder api") as raised:
        package_source(repo, "api", tmp_path / "record", "release-1")
    assert raised.value.next_step is not None and "app.subdir" in raised.value.next_step


def test_a_version_of_a_folder_that_is_not_a_git_repository_is_bad_input(
    tmp_path: Path,
) -> None:
    app = write_tree(tmp_path / "app", {"app.py": "print('hi')\n"})
    with pytest.raises(BadInputError) as raised:
        package_source(app, ".", tmp_path / "record", "v1.2")
    assert "'v1.2'" in raised.value.what and "not a git repository" in raised.value.what
    assert raised.value.next_step is not None and "leave out the version" in raised.value.next_step


def test_a_missing_app_folder_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="is not in"):
        package_source(tmp_path, "nope", tmp_path / "record")


def test_the_deploy_key_is_private_to_the_operator_and_removed_with_the_deployment(
    tmp_path: Path,
) -> None:
    public = ensure_key_pair(tmp_path)
    assert public.startswith("ssh-ed25519 AAAA")
    private = ssh_folder(tmp_path) / "id_ed25519"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(ssh_folder(tmp_path).stat().st_mode) == 0o700
    assert ensure_key_pair(tmp_path) == public  # the same pair for retries
    remove_keys(tmp_path)
    assert not ssh_folder(tmp_path).exists()


CONSOLE = """
[   12.3] cloud-init[1200]: Cloud-init v. 22.2.2 running 'modules:final'
-----BEGIN SSH HOST KEY FINGERPRINTS-----
256 SHA256:abc root@ip-10-0-1-5 (ECDSA)
256 SHA256:def root@ip-10-0-1-5 (ED25519)
-----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNh root@ip-10-0-1-5
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld root@ip-10-0-1-5
-----END SSH HOST KEY KEYS-----
"""


def test_host_keys_are_read_from_cloud_inits_console_block_strongest_first() -> None:
    keys = host_keys_from_console(CONSOLE)
    assert [k.key_type for k in keys] == ["ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert keys[0].key_base64 == "AAAAC3NzaC1lZDI1NTE5AAAAIOld"
    # A console without the block (first boot still running) has none to offer.
    assert host_keys_from_console("[    1.0] booting\n") == []
    # The latest block wins: a re-imaged instance prints a new one.
    newer = CONSOLE + CONSOLE.replace("IOld", "INew")
    assert host_keys_from_console(newer)[0].key_base64.endswith("INew")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path in ("/", "/health") else 500
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_qa_checks_the_url_and_says_why_a_check_does_not_apply(site: str) -> None:
    spec = make_spec("stage-1", "none", False)
    host, port = site.split(":")
    target = qa.Target(
        url=f"http://{site}",
        host=host,
        listener_ports=(int(port),),
        instances=(("i-1", "127.0.0.1"),),
        database=None,
    )
    calls: list[tuple[str, str]] = []

    def run_on(instance_id: str, command: str) -> tuple[int, str]:
        calls.append((instance_id, command))
        return 0, ""

    results = {r.name: r for r in qa.verify(spec, target, run_on)}
    assert results["http health"].status == "passed"
    assert "HTTP 200" in results["http health"].detail
    assert results[f"load balancer port {port}"].status == "passed"
    assert results["database"].status == "not_applicable"
    assert results["tls"].status == "not_applicable"
    assert calls and calls[0][0] == "i-1"  # the app port, checked from the instance


def test_qa_reports_a_failing_health_path_with_its_status(site: str) -> None:
    spec = make_spec("stage-1", "none", False)
    spec = spec.model_copy(update={"app": spec.app.model_copy(update={"health_path": "/broken"})})
    target = qa.Target(f"http://{site}", site.split(":")[0], (), (), None)
    results = {r.name: r for r in qa.verify(spec, target, lambda _i, _c: (0, ""))}
    assert results["http health"].status == "failed"
    assert "HTTP 500" in results["http health"].detail


def test_deploying_a_spec_without_its_source_is_bad_input(tmp_path: Path) -> None:
    from harness import EXAMPLES, run_cli

    spec_file = tmp_path / "spec.json"
    shown = run_cli(
        "spec", "show", str(EXAMPLES / "express-hello"), "-o", str(spec_file),
        env={"HIVEMIND_HOME": str(tmp_path)},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    result = run_cli(
        "deploy", "--spec", str(spec_file), "--yes", env={"HIVEMIND_HOME": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "deploying --spec needs the app's source too" in result.stderr
    assert "--source" in result.stderr
    assert not (tmp_path / "deployments").exists()  # nothing recorded, nothing created


# --- the local health probe ----------------------------------------------------------------


class _Paths(http.server.BaseHTTPRequestHandler):
    """/health answers 200, /old redirects (302), /boom fails (500), anything else 404."""

    def do_GET(self) -> None:
        code = {"/health": 200, "/old": 302, "/boom": 500}.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/nowhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def paths_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Paths)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _probe(
    base: str, path: str, tmp_path: Path, seconds: float = 5.0, main_pid: int = 0
) -> tuple[int, str]:
    """Run the probe the deploy runs on an instance, with a systemd that sees the app
    running as `main_pid` (no restarts, not failed)."""
    from hivemind.deployer.release import _ANSWERS, HEALTH_CANDIDATES

    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    systemctl = tools / "systemctl"
    systemctl.write_text(
        f'#!/bin/sh\n[ "$1" = show ] || exit 1\n[ "$3" = MainPID ] && echo {main_pid} && exit 0\n'
        "echo 0\n"
    )
    systemctl.chmod(0o755)
    host, _, port = base.removeprefix("http://").partition(":")
    given = {
        "url": base + path,
        "base": base,
        "host": host,
        "port": int(port),
        "seconds": seconds,
        "unit": "shop",
        "restarts": 3,
        "wrong_seconds": 0.5,
        "candidates": list(HEALTH_CANDIDATES),
    }
    done = subprocess.run(
        ["python3", "-c", _ANSWERS, json.dumps(given)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{tools}:/usr/bin:/bin"},
    )
    return done.returncode, done.stderr


def test_the_probe_passes_what_the_load_balancer_passes(paths_server: str, tmp_path: Path) -> None:
    assert _probe(paths_server, "/health", tmp_path) == (0, "")
    assert _probe(paths_server, "/old", tmp_path) == (0, "")  # 302, not followed: healthy


def test_the_probe_names_a_wrong_health_path_and_the_paths_that_answer(
    paths_server: str, tmp_path: Path
) -> None:
    code, said = _probe(paths_server, "/status", tmp_path)
    assert code == 1
    assert f"the app answers {paths_server}/status with HTTP 404" in said
    assert "wants 200-399" in said
    assert said.startswith("other paths: /health -> 200, /healthz -> 404")
    assert "/ready -> 404, / -> 404\n" in said
    assert said.endswith("wants 200-399\n")  # the last line: the failure's cause


def test_the_probe_takes_a_hostile_path_as_text(paths_server: str, tmp_path: Path) -> None:
    """The probe's values are data: quotes and shell syntax in a path run nothing."""
    marker = tmp_path / "ran"
    hostile = f"/x'\"); import os; os.system('touch {marker}'); (\"$(touch {marker})"
    code, said = _probe(paths_server, hostile, tmp_path, seconds=2.0)
    assert code == 1 and not marker.exists()
    assert hostile in said  # quoted back as the text it is


def test_a_failing_app_is_waited_for_not_called_a_wrong_path(
    paths_server: str, tmp_path: Path
) -> None:
    code, said = _probe(paths_server, "/boom", tmp_path, seconds=2.0)
    assert code == 1
    assert said == f"the app did not answer at {paths_server}/boom within 2 s: HTTP 500\n"


def test_the_probe_names_the_port_an_app_listens_on_instead(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a port nothing listens on: where HiveMind checks
        taken.bind(("127.0.0.1", 0))
        checked = taken.getsockname()[1]
    app = subprocess.Popen(  # the app, listening elsewhere (and on loopback only)
        ["python3", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert app.stdout is not None
        serving = app.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(serving.split(" port ")[1].split()[0])
        code, said = _probe(f"http://127.0.0.1:{checked}", "/", tmp_path, main_pid=app.pid)
    finally:
        app.kill()
        app.wait()
    assert code == 1
    assert said == (
        f"the app listens on 127.0.0.1:{port}, not on 127.0.0.1:{checked} where the load "
        "balancer checks it\n"
    )


def test_the_sandbox_systemctl_ends_its_options_at_a_double_dash_as_systemctl_does() -> None:
    """The deploy's probe writes `systemctl show -p MainPID --value -- UNIT` (getopt's end
    of options, which systemd's systemctl honours); the sandbox's stand-in reads it alike."""
    from hivemind.sandbox.host_tools.systemctl import Usage, parse

    options = parse(["show", "-p", "MainPID", "--value", "--", "shop"])
    assert (options.verb, options.units, options.properties) == ("show", ["shop"], ["MainPID"])
    assert parse(["--", "is-failed", "-x"]).units == ["-x"]
    with pytest.raises(Usage):
        parse(["show", "--no-such-option", "shop"])
