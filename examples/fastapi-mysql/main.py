"""fastapi-mysql: a tiny items API on FastAPI + SQLAlchemy 2 + PyMySQL.

Run with ``uvicorn main:app``. DATABASE_URL is required; ``mysql://`` URLs are
rewritten to ``mysql+pymysql://`` so the pure-Python PyMySQL driver is used.
"""

import logging
import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger("fastapi_mysql")


def normalize_database_url(url: str) -> str:
    """Point plain ``mysql://`` URLs at PyMySQL; leave every other URL alone."""
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url.removeprefix("mysql://")
    return url


APP_ENV = os.getenv("APP_ENV", "production")
DATABASE_URL = normalize_database_url(os.environ["DATABASE_URL"])
# pre_ping + recycle: survive MySQL's wait_timeout and database failovers.
engine = create_engine(DATABASE_URL, pool_pre_ping=True, pool_recycle=1800)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


_schema_ready = False


def ensure_schema(bind: Engine) -> None:
    """Create the items table on first use (no-op if it already exists)."""
    global _schema_ready
    if not _schema_ready:
        Base.metadata.create_all(bind)
        _schema_ready = True


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

app = FastAPI(title="fastapi-mysql")


@app.get("/")
def index() -> dict:
    return {"app": "fastapi-mysql", "env": APP_ENV, "message": "Hello from FastAPI!"}


@app.get("/healthz")
def healthz(session: SessionDep):
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health check failed: %s", exc)
        return JSONResponse(
            status_code=503, content={"status": "error", "database": type(exc).__name__}
        )
    return {"status": "ok"}


@app.get("/items", response_model=list[ItemOut])
def list_items(session: SessionDep):
    ensure_schema(session.get_bind())
    return session.scalars(select(Item).order_by(Item.id)).all()


@app.post("/items", response_model=ItemOut, status_code=201)
def create_item(payload: ItemIn, session: SessionDep):
    ensure_schema(session.get_bind())
    item = Item(name=payload.name)
    session.add(item)
    session.commit()
    session.refresh(item)
    return item
