"""A real image registry for tests: Debian's ``docker-registry`` (distribution 2.8), started with
its own config on a free loopback port, filesystem storage in a temporary directory.

- :class:`Registry`: one ``docker-registry serve CONFIG`` process; ``auth=None`` is open (the
  engine pushes to and pulls from ``127.0.0.1:PORT`` without TLS: Docker treats 127.0.0.0/8 as
  an insecure registry by default); with a :class:`TokenService` it wants bearer tokens as Docker
  Hub and GHCR do (``WWW-Authenticate: Bearer realm=…``), verified against the service's
  certificate. Two registries may share one storage directory: push through the open one, look
  up through the one with token auth.
- :class:`TokenService`: the token endpoint (an aiohttp server on loopback, in the test's event
  loop): ES256 JWTs with the certificate in ``x5c``, as distribution's token auth verifies them;
  a repository under ``public/`` may be pulled anonymously, the others only with the account's
  username and password (Basic). Every request is kept (``requests``) so tests can check what a
  client sent.

``registry_binary()`` is None when the package is missing (tests skip with how to install it;
``tests/engine/setup.sh`` installs it).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

START_TIMEOUT = 20.0
SERVICE = "stackward-test-registry"
ISSUER = "stackward-test-issuer"


def registry_binary() -> str | None:
    return shutil.which("docker-registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """The token endpoint of a registry with token auth (see the module doc)."""

    username: str = "robot"
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(8))
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self._runner: web.AppRunner | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def write_cert(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def token(self, repositories: list[str], subject: str) -> str:
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": [
                {"type": "repository", "name": r, "actions": ["pull"]} for r in repositories
            ],
        }
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        der = self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    async def _handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        user = ""
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return web.Response(status=400)
            if (user, password) != (self.username, self.password):
                self.requests.append({"query": dict(request.query), "auth": auth, "ok": False})
                return web.json_response({"details": "bad credentials"}, status=401)
        self.requests.append({"query": dict(request.query), "auth": auth, "ok": True})
        granted = []
        scope = request.query.get("scope", "")
        if scope.startswith("repository:") and scope.endswith(":pull"):
            name = scope[len("repository:") : -len(":pull")]
            if user or name.startswith("public/"):
                granted.append(name)
        return web.json_response(
            {"token": self.token(granted, user or "anonymous"), "expires_in": 300}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Registry:
    """One ``docker-registry serve`` process (see the module doc)."""

    def __init__(self, root: Path, storage: Path, token: TokenService | None = None) -> None:
        binary = registry_binary()
        assert binary is not None, "apt-get install docker-registry"
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if token is not None:
            cert = token.write_cert(root / "token.crt")
            config += [
                "auth:",
                "  token:",
                f"    realm: {token.realm}",
                f"    service: {SERVICE}",
                f"    issuer: {ISSUER}",
                f"    rootcertbundle: {cert}",
            ]
        path = root / "config.yml"
        path.write_text("\n".join(config) + "\n")
        self.log = root / "registry.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "serve", str(path)], stdout=out, stderr=subprocess.STDOUT
            )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # 401: up, with auth
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"docker-registry did not answer on {self.host}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
