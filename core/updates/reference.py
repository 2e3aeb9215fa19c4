"""Image references as Docker reads them (``distribution/reference``'s normalisation). Pure.

``nginx`` is ``docker.io/library/nginx:latest``; ``me/app:1`` is ``docker.io/me/app:1``; the
first component names a registry when it has a ``.`` or a ``:`` or is ``localhost``
(``ghcr.io/me/app``, ``127.0.0.1:5000/app``); ``index.docker.io`` is ``docker.io``, whose API
answers at ``registry-1.docker.io``. A reference with a digest (``app@sha256:…``) is pinned: it
never has an update (Komodo: "Images with a hardcoded digest can't have update").
"""

from __future__ import annotations

import ipaddress
import re

import msgspec

from core.exceptions import ImageReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*"
    r"[a-zA-Z0-9])?))*(?::[0-9]+)?|\[[0-9a-fA-F:.]+\](?::[0-9]+)?"
)
MAX_LENGTH = 255 + 128 + 100


class ImageRef(msgspec.Struct, frozen=True):
    domain: str  # "docker.io", "ghcr.io", "127.0.0.1:5000"
    path: str  # "library/nginx", "me/app"
    tag: str = "latest"
    digest: str = ""  # "sha256:…" when the reference pins one

    @property
    def pinned(self) -> bool:
        return bool(self.digest)

    @property
    def api_host(self) -> str:
        """Where the registry's HTTP API answers."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def host(self) -> str:
        """The host part of ``domain`` (no port, no brackets)."""
        host = self.domain
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def loopback(self) -> bool:
        """A registry on this machine's loopback (Docker treats 127.0.0.0/8 as insecure by
        default, so it is spoken to over plain HTTP)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def scope(self) -> str:
        """The token scope a pull of this repository needs."""
        return f"repository:{self.path}:pull"

    def __str__(self) -> str:
        out = f"{self.domain}/{self.path}:{self.tag}"
        return f"{out}@{self.digest}" if self.digest else out


def same_registry(a: str, b: str) -> bool:
    """Whether two registry domains are the same registry (Docker Hub's names are one)."""
    a, b = a.strip().lower().rstrip("/"), b.strip().lower().rstrip("/")
    for prefix in ("https://", "http://"):
        a, b = a.removeprefix(prefix), b.removeprefix(prefix)
    return a == b or (a in _HUB_ALIASES and b in _HUB_ALIASES)


def parse_reference(text: str) -> ImageRef:
    """Raises :class:`ImageReferenceError`."""
    ref = text.strip()
    if not ref:
        raise ImageReferenceError("an empty image reference")
    if len(ref) > MAX_LENGTH:
        raise ImageReferenceError(f"image reference longer than {MAX_LENGTH} characters")
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ImageReferenceError(f"{text!r}: {digest!r} is not a digest (algorithm:hex)")
    tag = ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageReferenceError(f"{text!r}: {tag!r} is not a valid tag")
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise ImageReferenceError(f"{text!r}: {first!r} is not a registry host")
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, ref
    if domain.lower() in _HUB_ALIASES:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise ImageReferenceError(
                f"{text!r}: {component!r} is not a valid repository name component (lowercase"
                " letters, digits and separators)"
            )
    return ImageRef(domain=domain, path=path, tag=tag or "latest", digest=digest)
