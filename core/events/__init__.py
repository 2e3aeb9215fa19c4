"""Events: what happened in the core, kept in SQLite and streamed to subscribers.

- ``model``: the event, its kinds and typed payloads, filters;
- ``log``: the events table (batched writes, id blocks, retention) and webhook deliveries;
- ``bus``: publish, fan-out to bounded subscriber queues, replay with ``since``;
- ``stream``: the ``/ws/events`` websocket (auth, Origin allowlist, formats, lag handling).
"""
