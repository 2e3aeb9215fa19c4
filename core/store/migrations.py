"""Schema migrations, numbered; :class:`core.store.Store` applies the missing ones at start.

Append only: never edit a migration that has shipped; add the next number.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[list[tuple[int, str]]] = [
    (
        1,
        """
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('revision', '0');

        -- The applied resources: canonical config (secrets masked) and its hash.
        CREATE TABLE resources (
            kind       TEXT NOT NULL,
            name       TEXT NOT NULL,
            sync       TEXT NOT NULL,
            config     TEXT NOT NULL,
            hash       TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (kind, name)
        );

        CREATE TABLE plans (
            id            TEXT PRIMARY KEY,
            sync          TEXT NOT NULL,
            base_revision INTEGER NOT NULL,
            created_at    REAL NOT NULL,
            applied_at    REAL,
            body          TEXT NOT NULL
        );
        CREATE INDEX plans_sync ON plans (sync, created_at);

        CREATE TABLE sync_runs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            sync        TEXT NOT NULL,
            plan_id     TEXT,
            started_at  REAL NOT NULL,
            finished_at REAL,
            status      TEXT NOT NULL,
            message     TEXT NOT NULL DEFAULT '',
            revision    INTEGER
        );
        CREATE INDEX sync_runs_sync ON sync_runs (sync, id);
        """,
    ),
]
