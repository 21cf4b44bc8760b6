"""fastapi-mysql tests (SQLite stands in for MySQL; see conftest.py)."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session


def test_index_greets(items_client):
    resp = items_client.get("/")
    assert resp.status_code == 200
    assert resp.json() == {"app": "fastapi-mysql", "env": "test", "message": "Hello from FastAPI!"}


def test_healthz_ok(items_client):
    resp = items_client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_healthz_503_when_database_unavailable(items_client, items_main_module, tmp_path):
    broken = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")

    def broken_session():
        with Session(broken) as session:
            yield session

    items_main_module.app.dependency_overrides[items_main_module.get_session] = broken_session
    resp = items_client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json()["status"] == "error"


def test_create_and_list_items(items_client):
    assert items_client.get("/items").json() == []

    first = items_client.post("/items", json={"name": "widget"})
    second = items_client.post("/items", json={"name": "gadget"})
    assert first.status_code == 201 and second.status_code == 201
    assert first.json()["name"] == "widget"
    assert first.json()["id"] != second.json()["id"]

    items = items_client.get("/items").json()
    assert [i["name"] for i in items] == ["widget", "gadget"]


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": None}, {"title": "x"}, ["widget"]])
def test_create_item_rejects_bad_body(items_client, body):
    resp = items_client.post("/items", json=body)
    assert resp.status_code == 422
    assert items_client.get("/items").json() == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://app:pw@db:3306/app", "mysql+pymysql://app:pw@db:3306/app"),
        ("mysql+pymysql://app:pw@db/app", "mysql+pymysql://app:pw@db/app"),
        ("mysql+mysqldb://app:pw@db/app", "mysql+mysqldb://app:pw@db/app"),
        ("sqlite:///tmp/test.db", "sqlite:///tmp/test.db"),
        ("postgresql://u:p@h/d", "postgresql://u:p@h/d"),
    ],
)
def test_normalize_database_url(items_main_module, url, expected):
    assert items_main_module.normalize_database_url(url) == expected
