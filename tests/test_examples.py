"""The bundled Express example passes its own tests (the Python examples' tests are
collected by pytest directly: see testpaths in pyproject.toml)."""

from __future__ import annotations

import subprocess

from harness import EXAMPLES

from hivemind import toolchain


def test_express_example_passes_its_own_tests() -> None:
    app = EXAMPLES / "express-hello"
    assert (app / "node_modules" / "express").is_dir(), "run ./scripts/bootstrap (npm ci)"
    node = toolchain.find_node()
    assert node is not None
    result = subprocess.run(
        [node.node, "--test", "--test-reporter=tap"],  # spec is the default since Node 23
        cwd=app,
        env=toolchain.node_env(node),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
