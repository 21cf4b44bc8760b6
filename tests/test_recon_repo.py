"""How Recon reads a repository: what it skips, where the app is, git URLs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import FIXTURES, write_tree

from hivemind.errors import BadInputError
from hivemind.recon.analyzer import analyze
from hivemind.recon.files import RepoFiles
from hivemind.recon.source import open_repo

EXPRESS_APP = {
    "package.json": '{"name": "shop", "dependencies": {"express": "^4.19.0"}}\n',
    "server.js": "const express = require('express');\nconst app = express();\n"
    "app.get('/healthz', (req, res) => res.send('ok'));\napp.listen(4100);\n",
}


def test_dependency_and_virtualenv_folders_are_never_read(tmp_path: Path) -> None:
    write_tree(tmp_path, EXPRESS_APP)
    # Misleading files where an analyzer must not look.
    write_tree(
        tmp_path,
        {
            "node_modules/koa/package.json": '{"name": "koa", "dependencies": {"pg": "1"}}',
            "node_modules/koa/index.js": "app.listen(9999)",
            ".venv/lib/site.py": "os.environ['SECRET_FROM_VENV']",
            "my-env/pyvenv.cfg": "home = /usr/bin",
            "my-env/lib/x.py": "os.environ['SECRET_FROM_NAMED_VENV']",
            "vendor/github.com/x/y.go": 'os.Getenv("VENDORED")',
        },
    )
    files = RepoFiles(tmp_path)
    assert files.files == ["package.json", "server.js"]
    profile = analyze(open_repo(str(tmp_path)))
    assert profile.value("port") == 4100
    assert profile.value("database_engine") == "none"
    assert [v.name for v in profile.env_vars] == []


def test_gitignored_files_are_skipped_and_nested_gitignores_apply(tmp_path: Path) -> None:
    write_tree(tmp_path, EXPRESS_APP)
    write_tree(
        tmp_path,
        {
            ".gitignore": "generated/\n*.log\n",
            "generated/Gemfile": "gem 'rails'\n",
            "debug.log": "listening on 9999",
            "lib/.gitignore": "secret.js\n",
            "lib/secret.js": "process.env.SHOULD_NOT_APPEAR",
            "lib/util.js": "module.exports = process.env.APP_MODE || 'x'",
        },
    )
    files = RepoFiles(tmp_path)
    assert "generated/Gemfile" not in files.files
    assert "debug.log" not in files.files
    assert "lib/secret.js" not in files.files
    assert "lib/util.js" in files.files
    names = [v.name for v in analyze(open_repo(str(tmp_path))).env_vars]
    assert names == ["APP_MODE"]


def test_test_suites_do_not_decide_the_framework(tmp_path: Path) -> None:
    write_tree(tmp_path, EXPRESS_APP)
    write_tree(tmp_path, {"test/app.test.js": "app.get('/health', h); app.listen(5555)"})
    profile = analyze(open_repo(str(tmp_path)))
    assert profile.value("health_path") == "/healthz"
    assert profile.value("port") == 4100


def test_commented_out_code_is_not_evidence(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "flask\n",
            "app.py": "from flask import Flask\napp = Flask(__name__)\n# app.run(port=9999)\n",
        },
    )
    profile = analyze(open_repo(str(tmp_path)))
    assert profile.value("port") == 5000
    assert profile.facts["port"].source == "default"


def test_monorepo_app_choice_is_explained() -> None:
    profile = analyze(open_repo(str(FIXTURES / "monorepo")))
    assert profile.app_dir.value == "services/api"
    assert "only folder with a web framework" in profile.app_dir.note
    assert "app.subdir" in profile.app_dir.note
    assert {c.path for c in profile.candidates} >= {".", "packages/ui", "services/api"}


def test_subdir_from_the_user_wins(tmp_path: Path) -> None:
    write_tree(tmp_path / "a", EXPRESS_APP)
    write_tree(
        tmp_path / "b",
        {
            "requirements.txt": "fastapi\nuvicorn\n",
            "main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        },
    )
    profile = analyze(open_repo(str(tmp_path)), subdir="b", subdir_evidence="--subdir")
    assert (profile.app_dir.value, profile.app_dir.source) == ("b", "user")
    assert profile.value("framework") == "fastapi"
    assert profile.facts["start_command"].evidence is not None
    assert profile.facts["start_command"].evidence.file == "b/main.py"


def test_a_missing_subdir_is_a_clear_error(tmp_path: Path) -> None:
    write_tree(tmp_path, EXPRESS_APP)
    with pytest.raises(BadInputError) as caught:
        analyze(open_repo(str(tmp_path)), subdir="services/nope", subdir_evidence="hivemind.yaml:2")
    assert "services/nope" in caught.value.what
    assert caught.value.where == "hivemind.yaml:2"


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "PATH": "/usr/bin:/bin",
        },
    )


def test_a_git_url_is_cloned_shallow_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_CACHE_DIR", str(tmp_path / "cache"))
    origin = write_tree(tmp_path / "origin", EXPRESS_APP)
    _git("init", "-q", "-b", "main", cwd=origin)
    _git("add", ".", cwd=origin)
    _git("commit", "-q", "-m", "first", cwd=origin)
    url = f"file://{origin}"

    checkout = open_repo(url)
    assert checkout.path.is_relative_to(tmp_path / "cache" / "repos")
    assert checkout.commit is not None and len(checkout.commit) == 40
    depth = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"],
        cwd=checkout.path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert depth == "1"
    assert analyze(checkout).value("framework") == "express"

    # A new commit upstream is picked up by the next run.
    (origin / "server.js").write_text("const express = require('express');\napp.listen(4200);\n")
    _git("commit", "-q", "-am", "second", cwd=origin)
    again = open_repo(url)
    assert again.path == checkout.path
    assert analyze(again).value("port") == 4200


def test_an_empty_git_repository_is_called_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_CACHE_DIR", str(tmp_path / "cache"))
    origin = tmp_path / "origin"
    origin.mkdir()
    _git("init", "-q", "-b", "main", cwd=origin)
    for ref in (str(origin), f"file://{origin}"):  # a local work tree, and a clone of it
        with pytest.raises(BadInputError) as caught:
            analyze(open_repo(ref))
        assert "the repository is empty" in caught.value.what


def test_an_unclonable_url_says_what_git_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(BadInputError) as caught:
        open_repo(f"file://{tmp_path}/no-such-repo.git")
    assert caught.value.exit_code == 2
    assert "could not clone" in caught.value.what
    assert caught.value.cause and "does not appear to be a git repository" in caught.value.cause
    assert not list((tmp_path / "cache" / "repos").glob("*/"))  # nothing half-cloned left
