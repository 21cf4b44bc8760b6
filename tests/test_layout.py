"""Where an app lives on its instances and the names it runs under: every name carries
HiveMind's prefix, so an app called like a system user or unit takes nothing of the
system's; the user data creates the app's user and root's folders from the same layout
the deploy writes."""

from __future__ import annotations

import re

import pytest
from harness import make_spec

from hivemind.compiler import render_user_data
from hivemind.deployer.layout import Layout
from hivemind.sandbox.host_tools.users import users_created

SYSTEM_NAMES = ("root", "sshd", "systemd-journald", "ec2-user", "dbus", "chronyd", "audit")


@pytest.mark.parametrize("name", SYSTEM_NAMES)
def test_an_app_named_like_a_system_user_or_unit_gets_names_of_its_own(name: str) -> None:
    layout = Layout(name)
    assert layout.user == f"hm-{name}" and len(layout.user) <= 32
    assert layout.unit_name == f"hivemind-{name}"
    assert layout.unit == f"/etc/systemd/system/hivemind-{name}.service"
    assert layout.root == f"/opt/hivemind/{name}"
    assert layout.log_dir == f"/var/log/hivemind/{name}"
    for path in (layout.unit, layout.root, layout.home, layout.env_file, layout.log_file):
        assert f"/{name}." not in path.replace(f"/hivemind-{name}.", "")


def test_the_longest_app_name_still_makes_a_linux_user_name() -> None:
    name = "a" * 24  # the spec's longest app name
    assert make_spec("stage-1", "none", False, app__name=name).app.name == name
    assert len(Layout(name).user) <= 32  # useradd's limit


@pytest.mark.parametrize("name", ["root", "sshd"])
def test_the_user_data_creates_the_prefixed_user_and_root_owned_folders(name: str) -> None:
    spec = make_spec("stage-1", "none", False, app__name=name)
    script = render_user_data(spec, f"{name}-abcdefghij")
    layout = Layout(name)

    assert users_created([script]) == [layout.user]
    useradd = next(line for line in script.splitlines() if "useradd" in line)
    assert f"--home-dir {layout.home} " in useradd
    # The folders the deploy writes as root are created without an owner (root's).
    folders = next(line for line in script.splitlines() if line.startswith("install -d"))
    assert folders.split()[:3] == ["install", "-d", "-m"] and " -o " not in folders
    assert set(folders.split()[4:]) == {
        layout.root, layout.releases, layout.shared, layout.log_dir
    }  # fmt: skip
    assert not re.search(rf"(^|\s){re.escape(name)}(\s|$)", useradd)
    assert f'"file_path":"{layout.log_files}"' in script  # what the CloudWatch agent ships


def test_users_created_reads_useradd_as_its_options_say() -> None:
    script = (
        "id hm-a >/dev/null 2>&1 || useradd --system --home-dir /opt/x -s /sbin/nologin hm-a\n"
        "useradd -m -d '/home/b c' hm-b && echo done\n"
        "# useradd hm-commented\n"
        "echo useradd-like words are not useradd\n"
    )
    assert users_created([script]) == ["hm-a", "hm-b"]
