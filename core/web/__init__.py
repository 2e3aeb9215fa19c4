"""The web dashboard, served by the core on its own port at ``/``.

- ``pages``: the page and its assets (``static/``: HTML, CSS and hand-written ES modules, no build
  step, nothing from another site), with a strict Content-Security-Policy on every response;
- ``signin``: ``/auth/login`` (an API token for an HttpOnly, SameSite=Strict session cookie),
  ``/auth/session`` (the session's role and CSRF token), ``/auth/logout``;
- ``sessions``: the sessions themselves, kept server side (memory and their own SQLite file),
  bounded and expiring.

The page reads the API (``/api/...``) and follows ``/ws/events`` with the session cookie; the
access check itself (tokens, viewers, sessions, CSRF) is ``core.api.http.auth``.
"""
