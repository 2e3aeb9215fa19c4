"""The dashboard's page and browser sign-in over real loopback (an in-process core): the page
and its headers, sessions, CSRF, viewers, and the event stream with a cookie. What a browser
would send is sent as a browser sends it (cookies, Origin); an attacker's page cannot set
Origin or read the cookie, so it is tested with the wrong ones."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from yarl import URL

from core.config import load_config
from core.web.pages import ASSETS
from tests.support.core_server import start_core
from tests.support.processes import write_toml

pytestmark = pytest.mark.anyio

OPERATOR = "operator-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
STATIC = Path(__file__).resolve().parents[3] / "core" / "web" / "static"


@dataclass
class Core:
    url: str
    app: web.Application

    @property
    def origin(self) -> str:
        return self.url

    def session(self) -> aiohttp.ClientSession:
        # unsafe=True: keep cookies for an IP address host, as a browser does
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def core(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Core]:
    resources = tmp_path / "resources.toml"
    resources.write_text(
        '[[server]]\nname = "nas"\n[server.config]\naddress = "ws://127.0.0.1:9/ws"\n'
        '[[stack]]\nname = "web"\n[stack.config]\nserver = "nas"\nfile_contents = "services: {}"\n'
    )
    config = load_config(
        write_toml(
            tmp_path / "core.toml",
            {
                "listen": "127.0.0.1:0",
                "data_dir": str(tmp_path / "data"),
                "api_tokens": [OPERATOR],
                "viewer_tokens": [VIEWER],
                "resources": [str(resources)],
                "poll_interval": 0,
                **getattr(request, "param", {}),
            },
        )
    )
    async with anyio.create_task_group() as tg:
        port, app = await start_core(tg, config)
        yield Core(f"http://127.0.0.1:{port}", app)
        tg.cancel_scope.cancel()


async def sign_in(core: Core, http: aiohttp.ClientSession, token: str = OPERATOR) -> str:
    """Sign in as the page does; the CSRF token."""
    async with http.post(
        core.url + "/auth/login", json={"token": token}, headers={"Origin": core.origin}
    ) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    return str(body["csrf"])


async def test_the_page_and_its_assets_carry_a_strict_csp(core: Core) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(core.url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            html = await r.text()
            csp = r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in csp
        for src in re.findall(r'(?:src|href)="(/ui/[^"]+)"', html):
            async with http.get(core.url + src) as r:
                assert r.status == 200, src
                assert r.headers["Content-Security-Policy"] == csp
                etag = r.headers["ETag"]
            async with http.get(core.url + src, headers={"If-None-Match": etag}) as r:
                assert r.status == 304
        async with http.get(core.url + "/ui/js/app.js") as r:
            assert r.content_type == "text/javascript"
        for probe in ("/ui/../core.toml", "/ui/%2e%2e/sessions.py", "/ui/nothing.js"):
            async with http.get(core.url + probe) as r:
                assert r.status == 404, probe
        # The API's answers carry the same policy (a JSON body opened as a page runs nothing).
        async with http.get(core.url + "/api/stacks") as r:
            assert r.status == 401 and "Content-Security-Policy" in r.headers


def test_the_page_relies_on_nothing_the_csp_forbids() -> None:
    """No inline script or style, no eval, no HTML built from strings, nothing kept in storage,
    nothing from another site."""
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", html) == [
        '<script type="module" src="/ui/js/app.js">'
    ]
    assert "<style" not in html and " style=" not in html and "http" not in html
    served = set(ASSETS.files())
    for path in STATIC.rglob("*.js"):
        source = path.read_text()
        for forbidden in (
            "innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function",
            "setAttribute(\"style\"", "localStorage", "sessionStorage", "document.write",
            "http://", "https://",
        ):
            assert forbidden not in source, f"{path.name}: {forbidden}"
        assert path.relative_to(STATIC).as_posix() in served


async def test_sign_in_gives_an_httponly_strict_cookie_and_the_api_needs_csrf(
    core: Core,
) -> None:
    async with core.session() as http:
        wrong = {"token": "wrong-token-wrong-token"}
        async with http.post(core.url + "/auth/login", json=wrong) as r:
            assert r.status == 401
        async with http.post(
            core.url + "/auth/login", data={"token": OPERATOR}
        ) as r:  # a form (what a cross-site page could post): refused
            assert r.status == 415
        async with http.post(
            core.url + "/auth/login",
            json={"token": OPERATOR},
            headers={"Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403
        async with http.post(
            core.url + "/auth/login", json={"token": OPERATOR}, headers={"Origin": core.origin}
        ) as r:
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
            csrf = (await r.json())["csrf"]
        assert re.match(r"stackward_session=[A-Za-z0-9_-]{40,};", cookie)
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "SameSite=Strict" in cookie and "secure" not in attributes  # plain HTTP here
        assert OPERATOR not in cookie

        async with http.get(core.url + "/api/stacks") as r:
            assert r.status == 200
        async with http.get(core.url + "/auth/session") as r:
            assert (await r.json())["role"] == "operator"
        # A state change without the CSRF token, with a wrong one, or from another origin.
        for headers in (
            {},
            {"X-Stackward-CSRF": "0" * 64},
            {"X-Stackward-CSRF": csrf, "Origin": "https://evil.example"},
        ):
            async with http.post(core.url + "/api/syncs/local/plan", headers=headers) as r:
                assert r.status == 403, headers
                assert (await r.json())["error"]["code"] in ("csrf", "cross_origin")
        async with http.post(
            core.url + "/api/syncs/local/plan",
            headers={"X-Stackward-CSRF": csrf, "Origin": core.origin},
        ) as r:
            assert r.status == 201

        # Sign out needs the CSRF token too; then the cookie is worth nothing.
        async with http.post(core.url + "/auth/logout") as r:
            assert r.status == 403
        old = http.cookie_jar.filter_cookies(URL(core.url))["stackward_session"].value
        async with http.post(core.url + "/auth/logout", headers={"X-Stackward-CSRF": csrf}) as r:
            assert r.status == 200
    async with aiohttp.ClientSession() as bare:
        async with bare.get(
            core.url + "/api/stacks", headers={"Cookie": f"stackward_session={old}"}
        ) as r:
            assert r.status == 401


async def test_bearer_tokens_work_as_before(core: Core) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {OPERATOR}"}
        async with http.post(core.url + "/api/syncs/local/plan", headers=headers) as r:
            assert r.status == 201  # no CSRF token for a bearer token: it is not ambient
        nope = {"Authorization": "Bearer nope"}
        async with http.get(core.url + "/api/stacks", headers=nope) as r:
            assert r.status == 401
        # A bearer header wins over a cookie: a wrong one is not saved by a session.
        csrf = await sign_in(core, http)
        async with http.post(
            core.url + "/api/syncs/local/plan",
            headers={"Authorization": "Bearer wrong", "X-Stackward-CSRF": csrf},
        ) as r:
            assert r.status == 401


def _state_changing_api_paths(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method in ("GET", "HEAD", "*") or not path.startswith("/api/"):
            continue
        out.append((route.method, re.sub(r"\{[^}]+\}", "x1", path)))
    return out


async def test_a_viewer_reads_and_every_state_change_under_api_is_403(core: Core) -> None:
    paths = _state_changing_api_paths(core.app)
    assert ("POST", "/api/syncs/x1/apply") in paths and len(paths) >= 4
    async with core.session() as http:
        headers = {"Authorization": f"Bearer {VIEWER}"}
        async with http.get(core.url + "/api/stacks", headers=headers) as r:
            assert r.status == 200
        for method, path in paths:
            async with http.request(method, core.url + path, headers=headers, json={}) as r:
                assert r.status == 403, (method, path)
                assert (await r.json())["error"]["code"] == "read_only"
        csrf = await sign_in(core, http, VIEWER)
        async with http.get(core.url + "/auth/session") as r:
            assert (await r.json())["role"] == "viewer"
        for method, path in paths:
            async with http.request(
                method, core.url + path, headers={"X-Stackward-CSRF": csrf}, json={}
            ) as r:
                assert r.status == 403, (method, path)
        # A viewer may sign out (not under /api).
        async with http.post(core.url + "/auth/logout", headers={"X-Stackward-CSRF": csrf}) as r:
            assert r.status == 200


async def _first_message(ws: aiohttp.ClientWebSocketResponse) -> Any:
    with anyio.fail_after(10):
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return msg.json()


async def test_the_event_stream_takes_the_pages_origin_and_cookie(core: Core) -> None:
    ws_url = core.url.replace("http", "ws") + "/ws/events"
    async with core.session() as http:
        await sign_in(core, http)
        # The page: its own origin, its cookie, no token message.
        async with http.ws_connect(ws_url, headers={"Origin": core.origin}) as ws:
            assert (await _first_message(ws))["control"] == "live"
        # Another site's page (its Origin), even with the cookie: refused before the upgrade.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
    async with aiohttp.ClientSession() as bare:
        # The page's origin without a session: it must send a token first (a viewer's will do).
        async with bare.ws_connect(ws_url, headers={"Origin": core.origin}) as ws:
            await ws.send_str(f'{{"token": "{VIEWER}"}}')
            assert (await _first_message(ws))["control"] == "live"
        async with bare.ws_connect(ws_url, headers={"Origin": core.origin}) as ws:
            await ws.send_str('{"token": "a-wrong-token-of-some-length"}')
            with anyio.fail_after(10):
                msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4401


@pytest.mark.parametrize("core", [{"max_sessions": 2}], indirect=True)
async def test_sessions_are_bounded(core: Core) -> None:
    jars = []
    for _ in range(3):
        http = core.session()
        await sign_in(core, http)
        jars.append(http)
    try:
        statuses = []
        for http in jars:
            async with http.get(core.url + "/api/stacks") as r:
                statuses.append(r.status)
        assert statuses == [401, 200, 200]  # the oldest sign-in ended
    finally:
        for http in jars:
            await http.close()


async def test_wrong_tokens_at_sign_in_are_limited_but_a_right_one_passes(core: Core) -> None:
    async with core.session() as http:
        statuses = []
        for n in range(22):
            async with http.post(
                core.url + "/auth/login", json={"token": f"wrong-token-number-{n:04}"}
            ) as r:
                statuses.append(r.status)
        assert statuses[:20] == [401] * 20 and statuses[-1] == 429
        await sign_in(core, http)


@pytest.mark.parametrize(
    ("viewers", "message"),
    [
        ([OPERATOR], "also in api_tokens"),
        (["short"], "shorter than 16"),
    ],
)
def test_viewer_tokens_are_checked(tmp_path: Path, viewers: list[str], message: str) -> None:
    from core.exceptions import ConfigError

    path = write_toml(
        tmp_path / "core.toml",
        {"data_dir": "d", "api_tokens": [OPERATOR], "viewer_tokens": viewers},
    )
    with pytest.raises(ConfigError, match=f'key "viewer_tokens": .*{message}'):
        load_config(path)
