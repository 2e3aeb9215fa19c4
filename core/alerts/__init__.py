"""Alerters: Komodo's ``[[alerter]]`` (Ntfy, Discord, Slack, Custom endpoints), its
``alert_types``, ``resources`` / ``except_resources`` filters and ``maintenance_windows``, and
``send_alerts`` on stacks.
"""
