"""Editor sessions, kept server-side in `editor_sessions`.

The browser's cookie holds a random id; this table holds only its SHA-256
(`id_hash`), so a copy of the table (a backup, a log of queries) opens nothing.
A session lives while its row does and `expires_at` is ahead: logging out
deletes the row, "log out everywhere" deletes them all, and the web side
(`newsletter/web/sessions.py`) refuses a row whose `password_mark` is not the
current password's. `save_data` never touches `expires_at`: the lifetime is
fixed when the session opens and does not slide.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from newsletter.store.schema import editor_sessions


def id_hash(session_id: str) -> str:
    """What the table stores of a cookie's id: its SHA-256 as hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SessionRow:
    id_hash: str
    created_at: dt.datetime
    expires_at: dt.datetime
    password_mark: str
    csrf: str
    data: dict[str, Any]


def create(
    engine: Engine,
    *,
    session_id: str,
    now: dt.datetime,
    expires_at: dt.datetime,
    password_mark: str,
    csrf: str,
    client: str,
    user_agent: str,
) -> SessionRow:
    """A new session's row; rows that expired before `now` are deleted on the way."""
    row = SessionRow(id_hash(session_id), now, expires_at, password_mark, csrf, {})
    with engine.begin() as conn:
        conn.execute(delete(editor_sessions).where(editor_sessions.c.expires_at <= now))
        conn.execute(
            insert(editor_sessions).values(
                id_hash=row.id_hash,
                created_at=now,
                expires_at=expires_at,
                password_mark=password_mark,
                csrf=csrf,
                data="{}",
                client=client[:64],
                user_agent=user_agent[:300],
            )
        )
    return row


def find(engine: Engine, session_id: str) -> SessionRow | None:
    """The row of a cookie's id, expired or not (the caller decides); None when there is none."""
    with engine.connect() as conn:
        found = conn.execute(
            select(
                editor_sessions.c.id_hash,
                editor_sessions.c.created_at,
                editor_sessions.c.expires_at,
                editor_sessions.c.password_mark,
                editor_sessions.c.csrf,
                editor_sessions.c.data,
            ).where(editor_sessions.c.id_hash == id_hash(session_id))
        ).first()
    if found is None:
        return None
    try:
        data = json.loads(found.data)
    except ValueError:
        data = {}
    return SessionRow(
        found.id_hash,
        found.created_at,
        found.expires_at,
        found.password_mark,
        found.csrf,
        data if isinstance(data, dict) else {},
    )


def save_data(engine: Engine, hashed: str, data: dict[str, Any]) -> None:
    """Store a session's data (flash messages, the last test address); `expires_at` stays."""
    with engine.begin() as conn:
        conn.execute(
            update(editor_sessions)
            .where(editor_sessions.c.id_hash == hashed)
            .values(data=json.dumps(data))
        )


def end(engine: Engine, hashed: str) -> None:
    """Delete one session (logout, or a row found expired or of an old password)."""
    with engine.begin() as conn:
        conn.execute(delete(editor_sessions).where(editor_sessions.c.id_hash == hashed))


def end_all(engine: Engine) -> int:
    """Delete every session ("log out everywhere"); how many there were."""
    with engine.begin() as conn:
        return conn.execute(delete(editor_sessions)).rowcount or 0
