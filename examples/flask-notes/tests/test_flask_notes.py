"""flask-notes tests, run against a real PostgreSQL server (see conftest.py)."""

import socket


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket closes


def test_index_greets(notes_client):
    resp = notes_client.get("/")
    assert resp.status_code == 200
    assert resp.get_json()["app"] == "flask-notes"


def test_health_ok(notes_client):
    resp = notes_client.get("/health")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "database": "ok"}


def test_health_503_when_database_unreachable(notes_client, notes_app_module, monkeypatch):
    url = f"postgresql://postgres:wrong@127.0.0.1:{_closed_loopback_port()}/postgres"
    monkeypatch.setitem(notes_app_module.app.config, "DATABASE_URL", url)
    resp = notes_client.get("/health")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "error"
    assert body["database"] and body["database"] != "ok"


def test_create_and_list_notes(notes_client):
    assert notes_client.get("/notes").get_json() == []

    first = notes_client.post("/notes", json={"text": "buy milk"})
    second = notes_client.post("/notes", json={"text": "  deploy to AWS  "})
    assert first.status_code == 201 and second.status_code == 201
    assert first.get_json()["text"] == "buy milk"
    assert second.get_json()["text"] == "deploy to AWS"

    notes = notes_client.get("/notes").get_json()
    assert [n["text"] for n in notes] == ["buy milk", "deploy to AWS"]
    assert all({"id", "text", "created_at"} <= n.keys() for n in notes)


def test_create_note_rejects_bad_input(notes_client):
    for kwargs in (
        {"json": {}},
        {"json": {"text": ""}},
        {"json": {"text": 42}},
        {"json": ["not", "an", "object"]},
        {"data": "not json", "content_type": "text/plain"},
    ):
        resp = notes_client.post("/notes", **kwargs)
        assert resp.status_code == 400, kwargs
        assert "error" in resp.get_json()
    assert notes_client.get("/notes").get_json() == []
