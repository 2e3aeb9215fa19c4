"""The registry lookup against a real registry (distribution 2.8, Debian's docker-registry):
manifests pushed over its HTTP API (no engine needed), a tag moved to a new manifest, and the
same storage behind a second registry with token auth as Docker Hub and GHCR do it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from core.exceptions import RegistryError
from core.updates.lookup import Credentials, Token, TokenKey
from core.updates.reference import parse_reference
from core.updates.registry import Registries
from tests.support.registry import Registry, TokenService, registry_binary

pytestmark = pytest.mark.anyio

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(session: aiohttp.ClientSession, base: str, name: str, data: bytes) -> str:
    digest = sha(data)
    async with session.post(f"{base}/v2/{name}/blobs/uploads/") as r:
        assert r.status == 202, await r.text()
        location = r.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    async with session.put(f"{location}{sep}digest={digest}", data=data) as r:
        assert r.status == 201, await r.text()
    return digest


async def push_manifest(registry: Registry, name: str, tag: str, label: str) -> str:
    """An image (one layer, a config with ``label``) pushed as ``name:tag``; its digest."""
    base = f"http://{registry.host}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("version")
        content = label.encode()
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"version": label}},
            "rootfs": {"type": "layers", "diff_ids": [sha(raw.getvalue())]},
        }
    ).encode()
    async with aiohttp.ClientSession() as session:
        layer_digest = await push_blob(session, base, name, layer)
        config_digest = await push_blob(session, base, name, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": layer_digest,
                    }
                ],
            }
        ).encode()
        async with session.put(
            f"{base}/v2/{name}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": MANIFEST},
        ) as r:
            assert r.status == 201, await r.text()
            assert r.headers["Docker-Content-Digest"] == sha(manifest)
    return sha(manifest)


@pytest.fixture
async def token_registry(
    tmp_path: Path, registry_storage: Path
) -> AsyncIterator[tuple[Registry, TokenService]]:
    if registry_binary() is None:
        pytest.skip("no docker-registry: apt-get install docker-registry")
    service = TokenService()
    await service.start()
    reg = Registry(tmp_path / "token-registry", registry_storage, service)
    try:
        yield reg, service
    finally:
        reg.stop()
        await service.stop()


async def test_a_moved_tag_gives_the_new_digest(registry: Registry) -> None:
    name = f"swtest{secrets.token_hex(4)}/app"
    first = await push_manifest(registry, name, "1", "v1")
    tokens: dict[TokenKey, Token] = {}
    ref = parse_reference(f"{registry.host}/{name}:1")
    async with Registries(tokens, timeout=5) as reg:
        assert await reg.digest(ref, None) == first
        second = await push_manifest(registry, name, "1", "v2")  # re-tagged and pushed again
        assert second != first
        assert await reg.digest(ref, None) == second
        with pytest.raises(RegistryError, match=r"app:2: the registry has no such tag"):
            await reg.digest(parse_reference(f"{registry.host}/{name}:2"), None)
    assert not tokens  # an open registry hands out no tokens


async def test_a_registry_that_is_down_is_an_error_in_time() -> None:
    from tests.support.registry import free_port

    ref = parse_reference(f"127.0.0.1:{free_port()}/nobody/app:1")
    async with Registries({}, timeout=2) as reg:
        with pytest.raises(RegistryError, match="cannot connect"):
            await reg.digest(ref, None)


async def test_token_auth_as_docker_hub_does_it(
    registry: Registry, token_registry: tuple[Registry, TokenService]
) -> None:
    """distribution's token auth (auth.token: realm, service, issuer, rootcertbundle) behind a
    token service: 401 with a Bearer challenge, a token for the scope, the manifest again."""
    authed, service = token_registry
    suffix = secrets.token_hex(4)
    private = f"swtest{suffix}/app"
    public = f"public/swtest{suffix}"
    private_digest = await push_manifest(registry, private, "1", "p1")  # the shared storage
    public_digest = await push_manifest(registry, public, "1", "q1")
    tokens: dict[TokenKey, Token] = {}
    creds = Credentials(service.username, service.password)
    async with Registries(tokens, timeout=5) as reg:
        # with the account: a token for repository:NAME:pull, Basic credentials to the realm
        assert await reg.digest(parse_reference(f"{authed.host}/{private}:1"), creds) == (
            private_digest
        )
        asked = service.requests[-1]
        assert asked["query"] == {
            "service": "stackward-test-registry",
            "scope": f"repository:{private}:pull",
        }
        assert asked["auth"].startswith("Basic ") and asked["ok"]
        # the token is kept: the next lookup of that repository asks the token service nothing
        before = len(service.requests)
        assert await reg.digest(parse_reference(f"{authed.host}/{private}:1"), creds) == (
            private_digest
        )
        assert len(service.requests) == before

        # anonymous: a public repository is fine, a private one is refused and says what to do
        assert await reg.digest(parse_reference(f"{authed.host}/{public}:1"), None) == (
            public_digest
        )
        assert service.requests[-1]["auth"] == ""
        with pytest.raises(RegistryError, match=r"refused anonymous access.*image_registry"):
            await reg.digest(parse_reference(f"{authed.host}/{private}:1"), None)

        # a wrong password: the token service refuses, and the error names only the user
        wrong = Credentials(service.username, "not-the-password")
        with pytest.raises(RegistryError, match="refused the credentials of 'robot'") as exc:
            await reg.digest(parse_reference(f"{authed.host}/{private}:2"), wrong)
        assert "not-the-password" not in str(exc.value)
