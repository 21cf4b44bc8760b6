"""Property tests over hostile strings: every value from a repository or a hivemind.yaml
that reaches a shell line, a systemd file or a program on the instances is either
refused by the spec or arrives there intact, as data.

* environment values -> the environment-file script (bash, printf) -> the file systemd
  reads (`units.parse_environment`, systemd's own reading of an EnvironmentFile);
* the build command -> `sudo -u hm-<app> -H bash -c <script>`: bash gets the script as
  one argument, whatever it holds;
* the health path -> the local health probe's one JSON argument;
* app names and environment names -> the spec's patterns, so the names HiveMind makes
  from them (user, unit, folders) hold only letters, digits and hyphens.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import make_spec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hivemind.deployer.access import Instance
from hivemind.deployer.layout import Layout
from hivemind.deployer.release import Deployer, _Steps, build_command, environment_script
from hivemind.records import InstanceRelease
from hivemind.sandbox.host_tools.units import parse_environment
from hivemind.spec import ENV_VAR_PATTERN

# What a hostile value is made of: shell and systemd metacharacters, quotes, escapes,
# line breaks other than \n (which the spec refuses), unicode, and anything else.
_NASTY = st.sampled_from(
    [*"\"'`$\\;&|<>(){}[]*?!#~=%\t\r \u00a0\u2028\u200b", "$(id)", "${HOME}", "\\n", "%s"]
)
HOSTILE = st.lists(st.one_of(_NASTY, st.text(max_size=8)), max_size=12).map("".join)
ENV_NAMES = st.from_regex(ENV_VAR_PATTERN, fullmatch=True).filter(lambda n: len(n) < 40)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the clone
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# The properties that run bash once an example.
SUBPROCESS_SETTINGS = settings(SETTINGS, max_examples=80)


def _spec_or_none(**changes: Any) -> Any:
    try:
        return make_spec("stage-1", "none", False, **changes)
    except ValidationError:
        return None


@SUBPROCESS_SETTINGS
@given(env=st.dictionaries(ENV_NAMES, HOSTILE, max_size=4))
def test_environment_values_reach_the_service_exactly(env: dict[str, str], tmp_path: Path) -> None:
    spec = _spec_or_none(app__env=env)
    if spec is None:  # refused: a value with \n or NUL, or over 4096 characters
        assert any("\n" in v or "\0" in v or len(v) > 4096 for v in env.values())
        return
    layout = Layout(spec.app.name)
    target = tmp_path / "app.env"
    target.unlink(missing_ok=True)
    script = environment_script(spec, layout, {}).replace(layout.env_file, str(target))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    read = parse_environment(target.read_bytes().decode("utf-8"))
    expected = {"PORT": str(spec.app.port), **{k: v for k, v in env.items() if k != "PORT"}}
    assert read == expected
    assert target.stat().st_mode & 0o777 == 0o600


# A stand-in for sudo that prints, NUL-separated, the command it was asked to run.
_ECHO_SUDO = """#!/bin/bash
while [ $# -gt 0 ]; do
    case "$1" in -u) shift 2 ;; -H) shift ;; *) break ;; esac
done
if [ "$1" = bash ] && [ "$2" = -c ]; then printf '%s\\0' "$@" > "$CAPTURE"; fi
exit 0
"""


@pytest.fixture(scope="module")
def fake_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tools")
    (folder / "sudo").write_text(_ECHO_SUDO)
    (folder / "sudo").chmod(0o755)
    return folder


@SUBPROCESS_SETTINGS
@given(script=HOSTILE.filter(lambda s: "\0" not in s))
def test_a_build_script_reaches_bash_as_one_argument(
    script: str, tmp_path: Path, fake_tools: Path
) -> None:
    layout = Layout("shop")
    folder = tmp_path / "release"
    folder.mkdir(exist_ok=True)
    capture = tmp_path / "capture"
    capture.unlink(missing_ok=True)
    line = build_command(layout, str(folder), script)
    env = {"PATH": f"{fake_tools}:{os.environ['PATH']}", "CAPTURE": str(capture)}
    done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert capture.read_bytes().split(b"\0")[:-1] == [b"bash", b"-c", script.encode()]


class _Recorder:
    """A connection that records the commands it is given and succeeds."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, **_options: Any) -> Any:
        self.commands.append(command)
        return type("Done", (), {"exited": 0, "stdout": "", "stderr": ""})()

    def close(self) -> None:
        pass


@SETTINGS
@given(path=HOSTILE.map(lambda s: "/" + s))
def test_a_health_path_is_refused_or_reaches_the_probe_as_data(path: str, tmp_path: Path) -> None:
    spec = _spec_or_none(app__health_path=path)
    if spec is None:
        return
    recorder = _Recorder()
    deployer = Deployer(spec, "shop-abcdefghij", tmp_path, log=print, connect_to=lambda _: recorder)
    instance = Instance("i-0abc", "10.0.0.5", "10.0.0.5")
    steps = _Steps(
        deployer, recorder, instance,
        InstanceRelease(instance_id="i-0abc", address="10.0.0.5", release_id="r"),
        stage="deploy", next_step="",
    )  # fmt: skip
    steps.wait_until_answering()
    (command,) = recorder.commands
    words = shlex.split(command)
    assert words[:3] == ["sudo", "python3", "-c"] and len(words) == 5
    given_values = json.loads(words[4])
    assert given_values["url"] == f"http://10.0.0.5:{spec.app.port}{path}"
    assert given_values["unit"] == "hivemind-shop"


@SETTINGS
@given(name=HOSTILE)
def test_an_app_name_is_refused_or_makes_only_plain_names(name: str) -> None:
    spec = _spec_or_none(app__name=name)
    assume(spec is not None or name)
    if spec is None:
        return
    layout = Layout(spec.app.name)
    for made in (layout.user, layout.unit_name, layout.root, layout.log_dir, layout.unit):
        assert re.fullmatch(r"[a-z0-9/._-]+", made), made
        assert ".." not in made


@SETTINGS
@given(name=HOSTILE)
def test_an_environment_name_is_refused_or_is_a_plain_name(name: str) -> None:
    spec = _spec_or_none(app__env={name: "x"})
    if spec is not None:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)


def test_an_environment_file_is_read_as_systemd_reads_it() -> None:
    # Cases from systemd's parse_env_file_internal (src/basic/env-file.c).
    text = (
        "# a comment\n; another\n"
        "PLAIN = spaced value  \n"
        'QUOTED="a \\"b\\" \\\\ \\$x \\`y\\` \\z"\n'  # \z keeps its backslash
        "SINGLE='no \\escapes $here'\n"
        "MIXED='one '\"two\"\n"  # quoted parts join; a quote after a plain part is plain
        "PLAIN_QUOTE=it's\n"
        "CONTINUED=first\\\nsecond\n"
        'CR="a\rb"\rNEXT=after a CR\n'
        "EMPTY=\n"
        "1BAD=dropped\n"
        "NOEQUALS\n"
        "LAST=no newline at the end"
    )
    assert parse_environment(text) == {
        "PLAIN": "spaced value",
        "QUOTED": 'a "b" \\ $x `y` \\z',
        "SINGLE": "no \\escapes $here",
        "MIXED": "one two",
        "PLAIN_QUOTE": "it's",
        "CONTINUED": "firstsecond",
        "CR": "a\rb",
        "NEXT": "after a CR",
        "EMPTY": "",
        "LAST": "no newline at the end",
    }
