"""A server's ``address`` as the core dials it: Komodo's http(s) addresses work unchanged."""

from __future__ import annotations

import pytest

from core.agents import dial_url


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("", ""),
        ("https://10.1.20.20:8120", "wss://10.1.20.20:8120/ws"),
        ("http://bigmt.example.ts.net:9120", "ws://bigmt.example.ts.net:9120/ws"),
        ("ws://10.0.0.2:8120/ws", "ws://10.0.0.2:8120/ws"),
        ("wss://nas:8443/", "wss://nas:8443/ws"),
        ("nas.lan", "wss://nas.lan:8120/ws"),
        ("nas.lan:9000", "wss://nas.lan:9000/ws"),
        ("[fd00::7]", "wss://[fd00::7]:8120/ws"),
        ("[fd00::7]:9000", "wss://[fd00::7]:9000/ws"),
        ("  https://host.docker.internal:8120  ", "wss://host.docker.internal:8120/ws"),
    ],
)
def test_addresses_become_websocket_urls(address: str, url: str) -> None:
    assert dial_url(address) == url
