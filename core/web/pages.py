"""The dashboard's page and assets, and the security headers of every response.

``GET /`` is the page (``static/index.html``); ``GET /ui/PATH`` its assets (``static/PATH``:
CSS, ES modules, the icon), read from the installed package (they ship in the wheel) once and
kept in memory with an ETag. The views are routed in the page (``#/stack/NAME``), so ``/`` is
the only HTML.

Every response carries a strict Content-Security-Policy (scripts, styles and connections only
from the core itself, no inline script or style, no framing), ``nosniff`` and ``no-referrer``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from core.api.http import Handler, error_response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class Assets:
    """The files under ``static/``, read once from the package."""

    def __init__(self) -> None:
        self._files: dict[str, Asset] | None = None

    def files(self) -> dict[str, Asset]:
        if self._files is None:
            root = resources.files("core.web") / "static"
            found: dict[str, Asset] = {}

            def walk(node: resources.abc.Traversable, prefix: str) -> None:
                for child in node.iterdir():
                    name = f"{prefix}{child.name}"
                    if child.is_dir():
                        walk(child, name + "/")
                        continue
                    suffix = "." + child.name.rsplit(".", 1)[-1]
                    if suffix in TYPES:
                        body = child.read_bytes()
                        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                        found[name] = Asset(body, TYPES[suffix], etag)

            walk(root, "")
            self._files = found
        return self._files

    def respond(self, request: web.Request, name: str) -> web.Response:
        asset = self.files().get(name)
        if asset is None:
            return error_response(404, "not_found", "no such file")
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers={"ETag": asset.etag})
        response = web.Response(body=asset.body, content_type=asset.content_type)
        if asset.content_type.startswith("text/"):
            response.charset = "utf-8"
        response.headers["ETag"] = asset.etag
        response.headers["Cache-Control"] = "no-cache"  # revalidate: an upgrade shows at once
        return response


ASSETS = Assets()


async def index(request: web.Request) -> web.Response:
    return ASSETS.respond(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    return ASSETS.respond(request, request.match_info["path"])


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index)
    router.add_get("/ui/{path:.+}", asset)
