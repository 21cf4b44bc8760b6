"""flask-notes: a tiny notes API on Flask + PostgreSQL (psycopg 3).

Run locally with ``python app.py`` or in production with ``gunicorn app:app``.
"""

import os

import psycopg
from flask import Flask, jsonify, request
from psycopg.rows import dict_row

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")
# Required: postgresql://user:password@host:port/dbname
app.config["DATABASE_URL"] = os.environ["DATABASE_URL"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id SERIAL PRIMARY KEY,
    text TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
_schema_ready = False


def connect() -> psycopg.Connection:
    return psycopg.connect(
        app.config["DATABASE_URL"], connect_timeout=5, row_factory=dict_row
    )


def notes_connection() -> psycopg.Connection:
    """Open a connection, creating the notes table the first time round."""
    global _schema_ready
    conn = connect()
    if not _schema_ready:
        with conn.transaction():
            conn.execute(SCHEMA)
        _schema_ready = True
    return conn


def serialize(row: dict) -> dict:
    return {"id": row["id"], "text": row["text"], "created_at": row["created_at"].isoformat()}


@app.errorhandler(psycopg.OperationalError)
def database_unavailable(exc: psycopg.OperationalError):
    app.logger.error("database error: %s", exc)
    return {"error": "database unavailable"}, 503


@app.get("/")
def index():
    return {"app": "flask-notes", "message": "Hello from Flask! Try GET /notes."}


@app.get("/health")
def health():
    try:
        with connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        app.logger.warning("health check failed: %s", exc)
        # Only the error class goes out; details (hosts, users) stay in the log.
        return {"status": "error", "database": type(exc).__name__}, 503
    return {"status": "ok", "database": "ok"}


@app.get("/notes")
def list_notes():
    with notes_connection() as conn:
        rows = conn.execute("SELECT id, text, created_at FROM notes ORDER BY id").fetchall()
    return jsonify([serialize(row) for row in rows])


@app.post("/notes")
def create_note():
    payload = request.get_json(silent=True)
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        return {"error": 'expected a JSON body like {"text": "..."}'}, 400
    with notes_connection() as conn:
        row = conn.execute(
            "INSERT INTO notes (text) VALUES (%s) RETURNING id, text, created_at",
            (text.strip(),),
        ).fetchone()
    return serialize(row), 201


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
