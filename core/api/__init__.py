"""The core's HTTP surfaces, on one port: ``/api/...`` (bearer token), ``/ws/events``,
``/ws/periphery`` (agents that dial in), ``/listener/...`` (webhooks), ``/healthz``,
``/metrics`` and ``/status/NAME``; the dashboard (``core.web``: ``/``, ``/ui/...``, ``/auth/...``).

One module per area (``syncs``: resources, plans, applies; ``stacks``: stacks, their state and
deploys; ``runs``: runs, deploys, their output and intents; ``servers``; ``monitoring``); every
handler reaches the core's parts the same way, ``parts(request)``.
"""
