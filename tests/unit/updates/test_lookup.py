"""Image references, WWW-Authenticate challenges and the digest lookup's state machine, without
sockets (the real registry, token service included, is in tests/integration/updates)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.exceptions import ImageReferenceError, RegistryError
from core.updates.checker import digests_of, update_available
from core.updates.lookup import (
    ACCEPT,
    MAX_REQUESTS,
    Challenge,
    Credentials,
    DigestLookup,
    HttpResponse,
    Token,
    TokenKey,
    parse_challenges,
)
from core.updates.reference import ImageRef, parse_reference, same_registry

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


# ------------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag"),
    [
        # distribution/reference's normalisation (what `docker pull` does with the name)
        ("nginx", "docker.io", "library/nginx", "latest"),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27"),
        ("me/app:2", "docker.io", "me/app", "2"),
        ("docker.io/library/redis:7", "docker.io", "library/redis", "7"),
        ("index.docker.io/me/app", "docker.io", "me/app", "latest"),
        ("ghcr.io/me/app:v1.2.3", "ghcr.io", "me/app", "v1.2.3"),
        ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000", "team/app", "1"),
        ("localhost/app", "localhost", "app", "latest"),
        ("registry.example.org:8443/a/b/c:tag_1", "registry.example.org:8443", "a/b/c", "tag_1"),
    ],
)
def test_references_are_normalised_as_docker_does(
    text: str, domain: str, path: str, tag: str
) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, "")


def test_docker_hub_answers_at_registry_1_and_loopback_is_plain_http() -> None:
    assert parse_reference("nginx").api_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/a").loopback
    assert parse_reference("localhost:5000/a").loopback
    assert not parse_reference("ghcr.io/a/b").loopback
    assert parse_reference("127.0.0.1:5000/a").scope == "repository:a:pull"


def test_a_digest_pins_the_reference() -> None:
    ref = parse_reference(f"nginx:1@{DIGEST}")
    assert ref.pinned and ref.digest == DIGEST and ref.tag == "1"
    with pytest.raises(RegistryError, match="pinned"):
        DigestLookup(ref, None, {}, 0.0)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Nginx", "component"),
        ("me/app:bad tag", "tag"),
        ("app@sha256:short", "digest"),
        ("a..b/c", "registry host"),
        ("a/b..c", "component"),
    ],
)
def test_bad_references_say_which_part(text: str, why: str) -> None:
    with pytest.raises(ImageReferenceError, match=why):
        parse_reference(text)


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ImageReferenceError:
        return
    assert ref.path and ref.tag and ref.domain
    assert parse_reference(str(ref)) == ref  # the normalised form reads back the same


def test_registry_domains_compare_as_docker_hub_is_one() -> None:
    assert same_registry("docker.io", "registry-1.docker.io")
    assert same_registry("https://ghcr.io/", "ghcr.io")
    assert not same_registry("ghcr.io", "docker.io")


# ------------------------------------------------------------------------------- challenges


def test_challenges_as_docker_hub_and_ghcr_send_them() -> None:
    hub = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert parse_challenges(hub) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull",
            },
        )
    ]
    two = 'Basic realm="x y", Bearer realm="https://t/\\"q\\"",scope="a:b,c"'
    assert parse_challenges(two) == [
        Challenge("basic", {"realm": "x y"}),
        Challenge("bearer", {"realm": 'https://t/"q"', "scope": "a:b,c"}),
    ]
    assert parse_challenges("Negotiate abc==, Basic realm=r") == [
        Challenge("negotiate", {}),
        Challenge("basic", {"realm": "r"}),
    ]


@given(st.text(max_size=120))
def test_challenge_parsing_never_raises(header: str) -> None:
    for c in parse_challenges(header):
        assert c.scheme == c.scheme.lower()


params_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\'), max_size=20
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Bearer", "Basic", "Digest"]),
            st.dictionaries(st.sampled_from(["realm", "service", "scope", "error"]), params_text),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_challenges_written_as_servers_write_them_read_back(
    written: list[tuple[str, dict[str, str]]],
) -> None:
    header = ", ".join(
        scheme + " " + ",".join(f'{k}="{v}"' for k, v in params.items())
        for scheme, params in written
    )
    assert parse_challenges(header) == [Challenge(s.lower(), p) for s, p in written]


# ------------------------------------------------------------------------- the state machine

REF = parse_reference("127.0.0.1:5000/team/app:1")
HUB = parse_reference("me/private:2")
CREDS = Credentials("robot", "tok-3n")


def bearer(realm: str = "https://auth.example/token", scope: str = "") -> dict[str, str]:
    scope_part = f',scope="{scope}"' if scope else ""
    return {"www-authenticate": f'Bearer realm="{realm}",service="reg"{scope_part}'}


def test_an_open_registry_answers_the_digest_in_one_head() -> None:
    lookup = DigestLookup(REF, None, {}, 0.0)
    req = lookup.next_request()
    assert req is not None
    assert (req.method, req.url) == ("HEAD", "http://127.0.0.1:5000/v2/team/app/manifests/1")
    assert req.headers == {"Accept": ACCEPT}
    lookup.receive(HttpResponse(200, {"docker-content-digest": DIGEST}))
    assert lookup.next_request() is None and lookup.digest == DIGEST


def test_token_auth_as_docker_hub_does_it_with_credentials() -> None:
    tokens: dict[TokenKey, Token] = {}
    lookup = DigestLookup(HUB, CREDS, tokens, 100.0)
    head = lookup.next_request()
    assert head is not None and head.url == "https://registry-1.docker.io/v2/me/private/manifests/2"
    lookup.receive(HttpResponse(401, bearer(scope="repository:me/private:pull")))
    get = lookup.next_request()
    assert get is not None and get.method == "GET"
    assert get.url == (
        "https://auth.example/token?service=reg&scope=repository%3Ame%2Fprivate%3Apull"
    )
    assert get.headers["Authorization"] == "Basic " + base64.b64encode(b"robot:tok-3n").decode()
    lookup.receive(HttpResponse(200, body=json.dumps({"token": "T0K", "expires_in": 300}).encode()))
    again = lookup.next_request()
    assert again is not None and again.headers["Authorization"] == "Bearer T0K"
    assert "tok-3n" not in repr(again) and "T0K" not in repr(again)
    lookup.receive(HttpResponse(200, {"docker-content-digest": DIGEST}))
    assert lookup.digest == DIGEST
    # the token is kept for the next lookup of that repository, until it expires
    (key,) = tokens
    assert key[:2] == ("registry-1.docker.io", "repository:me/private:pull")
    assert key[2].startswith("robot:") and "tok-3n" not in key[2]
    assert tokens[key].expires == 400
    reuse = DigestLookup(HUB, CREDS, tokens, 200.0).next_request()
    assert reuse is not None and reuse.headers.get("Authorization") == "Bearer T0K"
    late = DigestLookup(HUB, CREDS, tokens, 399.0).next_request()
    assert late is not None and "Authorization" not in late.headers
    other = DigestLookup(HUB, Credentials("robot", "another"), tokens, 200.0).next_request()
    assert other is not None and "Authorization" not in other.headers


def test_anonymous_token_and_access_token_field() -> None:
    lookup = DigestLookup(parse_reference("nginx"), None, {}, 0.0)
    lookup.next_request()
    lookup.receive(HttpResponse(401, bearer()))
    get = lookup.next_request()
    assert get is not None and "Authorization" not in get.headers
    assert "scope=repository%3Alibrary%2Fnginx%3Apull" in get.url  # from the reference
    lookup.receive(HttpResponse(200, body=b'{"access_token": "A"}'))
    lookup.next_request()
    lookup.receive(HttpResponse(200, {"docker-content-digest": DIGEST}))
    assert lookup.digest == DIGEST


def test_a_refused_token_or_manifest_says_whose_credentials_without_them() -> None:
    lookup = DigestLookup(HUB, CREDS, {}, 0.0)
    lookup.next_request()
    lookup.receive(HttpResponse(401, bearer()))
    lookup.next_request()
    with pytest.raises(RegistryError, match="refused the credentials of 'robot'") as exc:
        lookup.receive(HttpResponse(401))
    assert "tok-3n" not in str(exc.value)

    tokens: dict[TokenKey, Token] = {}
    lookup = DigestLookup(HUB, None, tokens, 0.0)
    lookup.next_request()
    lookup.receive(HttpResponse(401, bearer()))
    lookup.next_request()
    lookup.receive(HttpResponse(200, body=b'{"token": "no-scope"}'))
    lookup.next_request()
    with pytest.raises(RegistryError, match=r"anonymous access \(401\).*image_registry"):
        lookup.receive(HttpResponse(401, bearer()))
    assert not tokens  # a token that did not work is not kept


def test_basic_auth_registry() -> None:
    lookup = DigestLookup(REF, None, {}, 0.0)
    lookup.next_request()
    with pytest.raises(RegistryError, match=r"asks for credentials.*\[\[image_registry\]\]"):
        lookup.receive(HttpResponse(401, {"www-authenticate": 'Basic realm="r"'}))
    lookup = DigestLookup(REF, CREDS, {}, 0.0)
    lookup.next_request()
    lookup.receive(HttpResponse(401, {"www-authenticate": 'Basic realm="r"'}))
    req = lookup.next_request()
    assert req is not None and req.headers["Authorization"] == CREDS.basic()


def test_credentials_never_go_to_a_plain_http_token_service_elsewhere() -> None:
    lookup = DigestLookup(HUB, CREDS, {}, 0.0)
    lookup.next_request()
    lookup.receive(HttpResponse(401, bearer(realm="http://evil.example/token")))
    with pytest.raises(RegistryError, match="plain HTTP; refusing"):
        lookup.next_request()
    # a loopback token service (the tests' own) is fine
    lookup = DigestLookup(REF, CREDS, {}, 0.0)
    lookup.next_request()
    lookup.receive(HttpResponse(401, bearer(realm="http://127.0.0.1:9/token")))
    assert lookup.next_request() is not None


def test_no_digest_header_or_no_head_reads_the_manifest() -> None:
    body = b'{"schemaVersion": 2}'
    for first in (HttpResponse(200), HttpResponse(405)):
        lookup = DigestLookup(REF, None, {}, 0.0)
        lookup.next_request()
        lookup.receive(first)
        get = lookup.next_request()
        assert get is not None and get.method == "GET"
        lookup.receive(HttpResponse(200, body=body))
        assert lookup.digest.startswith("sha256:") and len(lookup.digest) == 71


@pytest.mark.parametrize(
    ("status", "says"),
    [(404, "no such tag"), (403, "refused access"), (429, "rate limit"), (500, "answered 500")],
)
def test_registry_failures_name_the_image(status: int, says: str) -> None:
    lookup = DigestLookup(REF, None, {}, 0.0)
    lookup.next_request()
    with pytest.raises(RegistryError, match=f"127.0.0.1:5000/team/app:1: .*{says}"):
        lookup.receive(HttpResponse(status))


responses = st.builds(
    HttpResponse,
    status=st.sampled_from([200, 201, 301, 400, 401, 403, 404, 405, 429, 500, 503]),
    headers=st.fixed_dictionaries(
        {},
        optional={
            "docker-content-digest": st.sampled_from([DIGEST, OTHER, "sha256:zz", ""]),
            "www-authenticate": st.sampled_from(
                [
                    'Bearer realm="https://a/t",service="s"',
                    'Basic realm="r"',
                    'Bearer realm="ftp://x"',
                    "garbage",
                    'Bearer realm="http://far.example/t"',
                ]
            ),
        },
    ),
    body=st.sampled_from([b"", b"{}", b'{"token": "x"}', b'{"token": 3}', b"\xff", b"[1]"]),
)


@settings(max_examples=300)
@given(st.lists(responses, min_size=MAX_REQUESTS + 2, max_size=MAX_REQUESTS + 2), st.booleans())
def test_any_answers_end_in_a_digest_or_a_registry_error(
    answers: list[HttpResponse], with_credentials: bool
) -> None:
    """Whatever a registry answers, the lookup ends within MAX_REQUESTS requests with a digest
    or a RegistryError, and never leaks the token into an error."""
    lookup = DigestLookup(HUB, CREDS if with_credentials else None, {}, 0.0)
    try:
        for answer in answers:
            if lookup.next_request() is None:
                break
            lookup.receive(answer)
        else:
            pytest.fail("the lookup did not end")
    except RegistryError as exc:
        assert "tok-3n" not in str(exc)
        return
    assert lookup.digest in (DIGEST, OTHER) or lookup.digest.startswith("sha256:")


# ------------------------------------------------------------------------------ comparison


def test_komodo_update_available_rule() -> None:
    """Komodo's ImageDigest::update_available (client/core/rs/src/entities/mod.rs): an update
    when the latest digest is not among the running ones; no running digest, no update."""
    assert update_available(DIGEST, [OTHER])
    assert not update_available(DIGEST, [OTHER, DIGEST])
    assert not update_available(DIGEST, [])  # a local build: nothing to compare with
    assert not update_available("", [OTHER])
    assert digests_of([f"127.0.0.1:5000/a@{DIGEST}", OTHER, f"b@{DIGEST}", "junk"]) == [
        DIGEST,
        OTHER,
    ]


def test_image_ref_str() -> None:
    assert str(ImageRef("docker.io", "library/nginx")) == "docker.io/library/nginx:latest"
