"""The digest of an image's tag, asked of its registry (Docker Registry HTTP API v2), as an
I/O-free state machine: it says which request to send next and reads each response; the driver
(:mod:`core.updates.registry`) only moves bytes.

1. ``HEAD /v2/NAME/manifests/TAG`` with every manifest type in ``Accept`` (so the registry
   answers the digest of the list or index a pull by tag resolves to); the digest is the
   ``Docker-Content-Digest`` header (a ``GET`` and the SHA-256 of the body when a registry does
   not send it, or does not allow ``HEAD``).
2. ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` (Docker Hub, GHCR,
   distribution with token auth): ``GET REALM?service=…&scope=repository:NAME:pull``, with the
   account's username and token as Basic credentials when there is one (anonymous otherwise),
   then the manifest again with ``Authorization: Bearer TOKEN``. Tokens are kept until they
   expire (``expires_in``, 60 s when not said), per registry, scope and account.
3. ``401`` with ``WWW-Authenticate: Basic``: the manifest again with Basic credentials.

A registry that refuses, a missing tag, an unexpected status or a malformed answer raises
:class:`~core.exceptions.RegistryError` naming the image and what to do; no message holds a
credential or a token. Credentials go over plain HTTP only to a loopback host.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import re
from collections.abc import MutableMapping
from urllib.parse import urlencode, urlsplit

import msgspec

from core.exceptions import RegistryError
from core.updates.reference import ImageRef

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
DEFAULT_TOKEN_SECONDS = 60.0
TOKEN_MARGIN = 5.0  # a token this close to expiring is not used
MAX_REQUESTS = 8  # a lookup that needs more is broken (a loop of challenges)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*[ \t]*(?:,|$)")


class Credentials(msgspec.Struct, frozen=True):
    username: str
    token: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, token=<hidden>)"

    def basic(self) -> str:
        raw = f"{self.username}:{self.token}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class Challenge(msgspec.Struct, frozen=True):
    scheme: str  # lowercase: "bearer", "basic"
    params: dict[str, str] = {}


class HttpRequest(msgspec.Struct, frozen=True):
    method: str
    url: str
    headers: dict[str, str] = {}

    def __repr__(self) -> str:  # the Authorization header is a credential
        shown = {
            k: ("<hidden>" if k.lower() == "authorization" else v) for k, v in self.headers.items()
        }
        return f"HttpRequest({self.method} {self.url}, {shown})"


class HttpResponse(msgspec.Struct, frozen=True):
    status: int
    headers: dict[str, str] = {}  # lowercase names
    body: bytes = b""


class Token(msgspec.Struct, frozen=True):
    value: str
    expires: float  # on the clock given as ``now``

    def __repr__(self) -> str:
        return f"Token(<hidden>, expires={self.expires})"


TokenKey = tuple[str, str, str]  # (registry host, scope, account: username + token hash, or "")
Tokens = MutableMapping[TokenKey, Token]


# ------------------------------------------------------------------------- WWW-Authenticate


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges: ``Scheme k=v, k="quoted, v", Scheme2 …``. Unparseable parts end
    the list (what was read before them is kept); never raises."""
    out: list[Challenge] = []
    i, n = 0, len(header)

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and header[i] in chars:
            i += 1

    def token() -> str:
        nonlocal i
        start = i
        while i < n and header[i] not in ' \t,="':
            i += 1
        return header[start:i]

    while i < n:
        skip(" \t,")
        scheme = token()
        if not scheme:
            break
        params: dict[str, str] = {}
        skip(" \t")
        m = _TOKEN68.match(header, i)
        if m is not None:  # "Scheme token68": no parameters (not used by registries)
            i = m.end()
            out.append(Challenge(scheme.lower(), params))
            continue
        while i < n:
            start = i
            key = token()
            skip(" \t")
            if not key or i >= n or header[i] != "=":
                i = start  # the next challenge's scheme (or a token68): not a parameter
                break
            i += 1
            skip(" \t")
            if i < n and header[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(header[i])
                    i += 1
                i += 1  # the closing quote (or the end)
                value = "".join(chars)
            else:
                value = token()
            params[key.lower()] = value
            skip(" \t")
            if i < n and header[i] == ",":
                i += 1
                skip(" \t")
        out.append(Challenge(scheme.lower(), params))
    return out


# ------------------------------------------------------------------------------- the lookup


class _State(enum.Enum):
    MANIFEST = "manifest"
    TOKEN = "token"
    DONE = "done"


def _registry_url(ref: ImageRef, method_path: str) -> str:
    scheme = "http" if ref.loopback else "https"
    return f"{scheme}://{ref.api_host}/v2/{ref.path}/{method_path}"


def _plain_http_ok(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    return host == "localhost" or host.startswith("127.") or host == "::1"


class DigestLookup:
    """One tag's digest. ``next_request()`` is the request to send (or None when done: then
    ``digest`` is set); ``receive(response)`` reads its answer. Raises ``RegistryError``."""

    def __init__(
        self, ref: ImageRef, credentials: Credentials | None, tokens: Tokens, now: float
    ) -> None:
        if ref.pinned:
            raise RegistryError(f"{ref}: pinned to a digest, it has no tag to look up")
        self.ref = ref
        self.credentials = credentials
        self.tokens = tokens
        self.now = now
        self.digest = ""
        self._state = _State.MANIFEST
        self._method = "HEAD"
        self._auth = ""  # the Authorization header for the manifest request
        self._tried: set[str] = set()  # the schemes already answered with credentials
        self._challenge: Challenge | None = None
        self._sent = 0
        cached = tokens.get(self._token_key())
        if cached is not None and cached.expires - TOKEN_MARGIN > now:
            self._auth = f"Bearer {cached.value}"
            self._tried.add("bearer")

    @property
    def what(self) -> str:
        return f"{self.ref.domain}/{self.ref.path}:{self.ref.tag}"

    def _token_key(self) -> TokenKey:
        account = ""
        if self.credentials is not None:  # another token of the same user is another account
            mark = hashlib.sha256(self.credentials.token.encode()).hexdigest()[:16]
            account = f"{self.credentials.username}:{mark}"
        return (self.ref.api_host, self.ref.scope, account)

    def next_request(self) -> HttpRequest | None:
        if self._state is _State.DONE:
            return None
        self._sent += 1
        if self._sent > MAX_REQUESTS:
            raise RegistryError(f"{self.what}: the registry keeps asking to authenticate")
        if self._state is _State.TOKEN:
            return self._token_request()
        headers = {"Accept": ACCEPT}
        if self._auth:
            headers["Authorization"] = self._auth
        url = _registry_url(self.ref, f"manifests/{self.ref.tag}")
        return HttpRequest(self._method, url, headers)

    def _token_request(self) -> HttpRequest:
        assert self._challenge is not None
        params = self._challenge.params
        realm = params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(
                f"{self.what}: the registry's token service is not a URL ({realm[:100]!r})"
            )
        query = {"scope": params.get("scope") or self.ref.scope}
        if params.get("service"):
            query = {"service": params["service"], **query}
        sep = "&" if parts.query else "?"
        url = realm + sep + urlencode(query)
        headers: dict[str, str] = {}
        if self.credentials is not None:
            if not _plain_http_ok(realm):
                raise RegistryError(
                    f"{self.what}: the token service {parts.netloc} is plain HTTP; refusing to"
                    " send the account's credentials there"
                )
            headers["Authorization"] = self.credentials.basic()
        return HttpRequest("GET", url, headers)

    def receive(self, response: HttpResponse) -> None:
        if self._state is _State.TOKEN:
            self._on_token(response)
        elif self._state is _State.MANIFEST:
            self._on_manifest(response)

    def _on_manifest(self, response: HttpResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            digest = response.headers.get("docker-content-digest", "").strip()
            if not digest and self._method == "HEAD":
                self._method = "GET"  # no digest header: read the manifest and hash it
                return
            if not digest:
                digest = "sha256:" + hashlib.sha256(response.body).hexdigest()
            if not _DIGEST.fullmatch(digest):
                raise RegistryError(f"{self.what}: {digest[:80]!r} is no sha256 digest")
            self.digest = digest
            self._state = _State.DONE
        elif status == 401:
            self._challenged(response)
        elif status == 405 and self._method == "HEAD":
            self._method = "GET"
        elif status == 404:
            raise RegistryError(
                f"{self.what}: the registry has no such tag or repository (404)"
                + (" or refuses to say without credentials" if self.credentials is None else "")
            )
        elif status == 403:
            raise RegistryError(f"{self.what}: the registry refused access (403)")
        elif status == 429:
            raise RegistryError(f"{self.what}: the registry's rate limit is reached (429)")
        else:
            raise RegistryError(f"{self.what}: the registry answered {status}")

    def _challenged(self, response: HttpResponse) -> None:
        challenges = parse_challenges(response.headers.get("www-authenticate", ""))
        by_scheme = {c.scheme: c for c in challenges}
        bearer, basic = by_scheme.get("bearer"), by_scheme.get("basic")
        if bearer is not None and "bearer" not in self._tried:
            self._challenge = bearer
            self._state = _State.TOKEN
            return
        if basic is not None and "basic" not in self._tried and self.credentials is not None:
            # the registry is HTTPS, or on the loopback (_registry_url): Basic is safe to send
            self._auth = self.credentials.basic()
            self._tried.add("basic")
            return
        if self._tried:
            self.tokens.pop(self._token_key(), None)
            raise RegistryError(
                f"{self.what}: the registry refused "
                + (
                    f"the credentials of {self.credentials.username!r}"
                    if self.credentials
                    else "anonymous access"
                )
                + " (401)"
                + ("" if self.credentials else ": add an account in [[image_registry]]")
            )
        if basic is not None:
            raise RegistryError(
                f"{self.what}: the registry asks for credentials: add an account for"
                f" {self.ref.domain!r} in the core's [[image_registry]]"
            )
        raise RegistryError(
            f"{self.what}: the registry answered 401 without a challenge stackward knows"
        )

    def _on_token(self, response: HttpResponse) -> None:
        who = f"the credentials of {self.credentials.username!r}" if self.credentials else None
        if response.status in (401, 403):
            raise RegistryError(
                f"{self.what}: the token service refused "
                + (who or "anonymous access: add an account in [[image_registry]]")
                + f" ({response.status})"
            )
        if not 200 <= response.status < 300:
            raise RegistryError(f"{self.what}: the token service answered {response.status}")
        try:
            body = json.loads(response.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{self.what}: the token service's answer is not JSON") from exc
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"{self.what}: the token service's answer has no token")
        seconds = body.get("expires_in")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            seconds = DEFAULT_TOKEN_SECONDS
        self.tokens[self._token_key()] = Token(value, self.now + float(seconds))
        self._auth = f"Bearer {value}"
        self._tried.add("bearer")
        self._state = _State.MANIFEST
