"""Test fixtures for fastapi-mysql.

There is no MySQL server in the test environment, so the app runs against a
throwaway SQLite file (any non-mysql:// SQLAlchemy URL is used as is).
"""

import importlib
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

APP_DIR = Path(__file__).resolve().parent.parent
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="session")
def items_db_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('fastapi-mysql') / 'test.db'}"


@pytest.fixture(scope="session")
def items_main_module(items_db_url):
    """Import main.py with DATABASE_URL pointing at the SQLite test database."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", items_db_url)
        mp.setenv("APP_ENV", "test")
        module = importlib.import_module("main")
    return module


@pytest.fixture
def items_client(items_main_module):
    """A TestClient against an empty items table."""
    main = items_main_module
    main.Base.metadata.create_all(main.engine)
    with main.engine.begin() as conn:
        conn.execute(delete(main.Item))
    with TestClient(main.app) as client:
        yield client
    main.app.dependency_overrides.clear()
