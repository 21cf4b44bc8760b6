"""Every test runs offline: fake AWS credentials, no instance metadata, and
HiveMind's state under a temporary folder.

How the suite runs side by side (`scripts/test`: pytest-xdist, `--dist loadscope` with
the scheduler below):

* Each module is one unit of work, kept on one worker (its module fixtures run once),
  except the end-to-end modules in SPREAD, whose tests are independent and each long:
  those are handed out one test at a time.
* A worker is given its next unit only once it is idle (xdist's own scheduler queues two
  more behind a running one, so two long tests could wait for a third), longest first:
  SCHEDULED_FIRST, then everything else in the order collected.
* Each worker has one sandbox daemon (`sandbox_home`), which every test that deploys
  shares: `sandbox_env` empties it (`hivemind sandbox reset`) before each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivemind.sandbox import control

# Modules whose tests each deploy and destroy on their own: spread test by test.
SPREAD = ("test_day2.py", "test_medic_sandbox.py", "test_lifecycle.py", "test_onbox_deploy.py")
# Handed out first, in this order: the longest units.
SCHEDULED_FIRST = (*SPREAD, "test_ops_e2e.py", "test_compiler.py", "test_cli_synth.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SCHEDULED_FIRST.index(name) if name in SCHEDULED_FIRST else len(SCHEDULED_FIRST)

    items.sort(key=rank)  # stable: the order within each rank stays as collected


def _long(scope: str) -> bool:
    """Is this unit of work (a group: a module's name; or one test's node id) long?"""
    return Path(scope.split("::")[0]).name in SCHEDULED_FIRST


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling with our units (a module; a test of a SPREAD module),
    one unit queued behind a worker's running one at most (a worker needs one, to know
    what runs next), and that one short when the running one is long: so no long test
    waits behind another. (xdist's own `xdist_group` is no help: it renames items in a
    way pytest 9.2 no longer reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneQueued(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return nodeid if Path(module).name in SPREAD else module

        def _reschedule(self, node: Any) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            assigned = self.assigned_work[node]
            running = [scope for scope, unit in assigned.items() if not all(unit.values())]
            if self._pending_of(assigned) > 1 or len(running) > 1:
                return
            # The queue runs longest first: behind a long unit, take the last (shortest).
            self._assign(node, from_back=bool(running) and _long(running[0]))

        def _assign_work_unit(self, node: Any) -> None:
            self._assign(node, from_back=False)

        def _assign(self, node: Any, from_back: bool) -> None:
            scope, unit = self.workqueue.popitem(last=from_back)
            self.assigned_work.setdefault(node, {})[scope] = unit
            collection = self.registered_collections[node]
            node.send_runtest_some(
                [collection.index(nodeid) for nodeid, done in unit.items() if not done]
            )

    return OneQueued(config, log)


@pytest.fixture(autouse=True)
def offline_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HIVEMIND_HOME", str(tmp_path / "hivemind-home"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in list(os.environ):
        if name.startswith("HIVEMIND_") and name not in ("HIVEMIND_HOME", "HIVEMIND_CACHE_DIR"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="session")
def sandbox_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This test worker's sandbox: one daemon per pytest-xdist worker (started by the
    first command that needs it), shared by every test that deploys in it. Its HiveMind
    home holds those tests' deployment records too."""
    home = tmp_path_factory.mktemp("sandbox-home")
    yield home
    control.down(home)


def sandbox_environment(home: Path) -> dict[str, str]:
    return {"HIVEMIND_HOME": str(home), "HIVEMIND_SANDBOX": "1"}


def _fresh(home: Path) -> None:
    """Start the worker's sandbox, or empty it (`hivemind sandbox reset`): whatever an
    earlier test left there, this one starts from a new account. Its agents ship logs
    and metrics at the sandbox's default interval (5 s; AWS's: every minute)."""
    info = control.status(home)
    if info is None:
        control.up(home)
    else:
        control.reset(info)


@pytest.fixture(scope="module")
def fast_agent_sandbox_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A sandbox of the module's own whose agents ship logs and metrics every second, for
    tests that read what the agents ship. (At that pace a worker's shared daemon would
    spend a tenth of a core on every deployment's disk and connection counts.)"""
    home = tmp_path_factory.mktemp("fast-agent-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HIVEMIND_SANDBOX_AGENT_INTERVAL", "1")
        control.up(home)
    yield sandbox_environment(home)
    control.down(home)


@pytest.fixture
def sandbox_env(sandbox_home: Path) -> Iterator[dict[str, str]]:
    """The environment of a command run in a fresh sandbox (the worker's, reset)."""
    _fresh(sandbox_home)
    yield sandbox_environment(sandbox_home)


@pytest.fixture(scope="module")
def module_sandbox_env(sandbox_home: Path) -> dict[str, str]:
    """The same, reset once for a module whose tests share what they deploy (such a
    module is kept on one worker, as every module not in SPREAD is)."""
    _fresh(sandbox_home)
    return sandbox_environment(sandbox_home)
