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
    (
        2,
        """
        -- Deploys: a run is one pass over the graph (an apply, or one stack by the API),
        -- a deploy is one stack in it, with its steps and every output line.
        CREATE TABLE deploy_runs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            trigger     TEXT NOT NULL,
            started_at  REAL NOT NULL,
            finished_at REAL,
            status      TEXT NOT NULL
        );

        CREATE TABLE deploys (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id      INTEGER NOT NULL REFERENCES deploy_runs (id),
            stack       TEXT NOT NULL,
            server      TEXT NOT NULL DEFAULT '',
            commit_id   TEXT NOT NULL DEFAULT '',
            status      TEXT NOT NULL,
            reason      TEXT NOT NULL DEFAULT '',
            fence       INTEGER,
            started_at  REAL,
            finished_at REAL
        );
        CREATE INDEX deploys_run ON deploys (run_id, id);
        CREATE INDEX deploys_stack ON deploys (stack, id);

        CREATE TABLE deploy_steps (
            deploy_id   INTEGER NOT NULL REFERENCES deploys (id),
            step        TEXT NOT NULL,
            status      TEXT NOT NULL,
            message     TEXT NOT NULL DEFAULT '',
            started_at  REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (deploy_id, step)
        );

        CREATE TABLE deploy_output (
            deploy_id INTEGER NOT NULL REFERENCES deploys (id),
            seq       INTEGER NOT NULL,
            step      TEXT NOT NULL,
            stream    TEXT NOT NULL,
            at        REAL NOT NULL,
            text      TEXT NOT NULL,
            PRIMARY KEY (deploy_id, seq)
        );

        -- One deploy per stack at a time. The token only grows (meta fence), and the periphery
        -- refuses commands with a token lower than one it has seen for the stack.
        CREATE TABLE stack_locks (
            stack       TEXT PRIMARY KEY,
            token       INTEGER NOT NULL,
            holder      TEXT NOT NULL,
            deploy_id   INTEGER,
            acquired_at REAL NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('fence', '0');
        """,
    ),
    (
        3,
        """
        -- Events: everything that happens, with a monotonic id (ids are reserved in blocks in
        -- meta 'event_id', so they keep growing across restarts, even after a crash).
        CREATE TABLE events (
            id       INTEGER PRIMARY KEY,
            time     REAL NOT NULL,
            kind     TEXT NOT NULL,
            resource TEXT NOT NULL DEFAULT '',
            data     BLOB NOT NULL
        );
        CREATE INDEX events_time ON events (time);
        INSERT INTO meta (key, value) VALUES ('event_id', '0');

        -- Webhook deliveries seen (de-duplicated for a day, across restarts).
        CREATE TABLE webhook_deliveries (
            delivery TEXT PRIMARY KEY,
            seen_at  REAL NOT NULL
        );
        """,
    ),
    (
        4,
        """
        -- Convergence (core/reconcile): every trigger is an intent, recorded before it is
        -- answered, carried by one run per stack. Per stack: what the engine reports and when
        -- a failed stack may be retried. Branch heads learned. What each sync defines.
        -- (No semicolons in comments: statements are split on them.)
        CREATE TABLE intents (
            id         INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            source     TEXT NOT NULL,
            reason     TEXT NOT NULL DEFAULT '',
            stacks     TEXT NOT NULL,
            pins       TEXT NOT NULL DEFAULT '{}',
            runs       TEXT NOT NULL DEFAULT '{}',
            status     TEXT NOT NULL DEFAULT 'open'
        );
        CREATE INDEX intents_status ON intents (status, id);

        ALTER TABLE deploy_runs ADD COLUMN source TEXT NOT NULL DEFAULT '';
        ALTER TABLE deploys ADD COLUMN spec TEXT NOT NULL DEFAULT '';
        ALTER TABLE deploys ADD COLUMN spec_form TEXT NOT NULL DEFAULT '';
        ALTER TABLE deploys ADD COLUMN failed_step TEXT NOT NULL DEFAULT '';
        ALTER TABLE deploys ADD COLUMN tail TEXT NOT NULL DEFAULT '';
        CREATE INDEX deploys_status ON deploys (status);

        CREATE TABLE stack_state (
            stack         TEXT PRIMARY KEY,
            engine        TEXT NOT NULL DEFAULT 'unknown',
            engine_detail TEXT NOT NULL DEFAULT '',
            engine_at     REAL,
            failures      INTEGER NOT NULL DEFAULT 0,
            retry_at      REAL
        );

        CREATE TABLE heads (
            url       TEXT NOT NULL,
            branch    TEXT NOT NULL,
            commit_id TEXT NOT NULL,
            at        REAL NOT NULL,
            source    TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (url, branch)
        );

        CREATE TABLE sync_defines (
            sync TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            PRIMARY KEY (sync, kind, name)
        );
        """,
    ),
    (
        5,
        """
        -- Procedures (core/automation): each run, its steps and its output lines. Schedules:
        -- what each armed schedule last did, and each time it fired (the key makes a time fire
        -- once, across restarts). Server keys rotated by RotateAllServerKeys: the keys the core
        -- accepts for a server instead of the one its resource pins, while the resource still
        -- pins the key they were rotated from (base).
        CREATE TABLE procedure_runs (
            id          INTEGER PRIMARY KEY,
            procedure   TEXT NOT NULL,
            source      TEXT NOT NULL,
            reason      TEXT NOT NULL DEFAULT '',
            parent      INTEGER,
            started_at  REAL NOT NULL,
            finished_at REAL,
            status      TEXT NOT NULL,
            message     TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX procedure_runs_name ON procedure_runs (procedure, id);
        CREATE INDEX procedure_runs_status ON procedure_runs (status);

        CREATE TABLE procedure_steps (
            run_id      INTEGER NOT NULL REFERENCES procedure_runs (id),
            seq         INTEGER NOT NULL,
            stage       INTEGER NOT NULL,
            stage_name  TEXT NOT NULL,
            execution   TEXT NOT NULL,
            status      TEXT NOT NULL,
            message     TEXT NOT NULL DEFAULT '',
            started_at  REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (run_id, seq)
        );

        CREATE TABLE procedure_output (
            run_id INTEGER NOT NULL REFERENCES procedure_runs (id),
            seq    INTEGER NOT NULL,
            at     REAL NOT NULL,
            text   TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        );

        CREATE TABLE schedules (
            procedure   TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            armed_at    REAL NOT NULL,
            last_due    REAL
        );

        CREATE TABLE schedule_fires (
            procedure TEXT NOT NULL,
            due_at    REAL NOT NULL,
            fired_at  REAL NOT NULL,
            outcome   TEXT NOT NULL,
            run_id    INTEGER,
            PRIMARY KEY (procedure, due_at)
        );

        CREATE TABLE server_keys (
            server     TEXT PRIMARY KEY,
            base       TEXT NOT NULL,
            active     TEXT NOT NULL,
            next       TEXT NOT NULL DEFAULT '',
            updated_at REAL NOT NULL
        );
        """,
    ),
]
