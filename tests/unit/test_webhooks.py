"""Webhook signatures and payloads, with the vectors in ../shared/vectors."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from core.webhooks.forges import Deliveries, delivery_of, event_of, parse_push, verify

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"


def github_vector() -> tuple[str, bytes, str]:
    text = (VECTORS / "README.md").read_text()
    secret = re.search(r"secret `([^`]+)`", text)
    body = re.search(r"body `([^`]+)`", text)
    signature = re.search(r"X-Hub-Signature-256: (sha256=[0-9a-f]{64})", text)
    assert secret and body and signature, "the vector is in ../shared/vectors/README.md"
    return secret.group(1), body.group(1).encode(), signature.group(1)


def test_githubs_documented_vector() -> None:
    secret, body, signature = github_vector()
    assert verify("github", {"X-Hub-Signature-256": signature}, body, [secret])
    assert not verify("github", {"X-Hub-Signature-256": signature}, body + b"\n", [secret])
    assert not verify("github", {"X-Hub-Signature-256": signature}, body, ["another secret"])
    assert not verify("github", {}, body, [secret])
    assert not verify("github", {"X-Hub-Signature-256": signature[7:]}, body, [secret])


def test_two_secrets_are_valid_while_one_is_rotated() -> None:
    secret, body, signature = github_vector()
    assert verify("github", {"X-Hub-Signature-256": signature}, body, ["new-secret", secret])
    assert not verify("github", {"X-Hub-Signature-256": signature}, body, [])


@pytest.mark.parametrize(
    "forge, header", [("gitea", "X-Gitea-Signature"), ("forgejo", "X-Forgejo-Signature")]
)
def test_gitea_and_forgejo_sign_bare_hex(forge: str, header: str) -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = hmac.new(b"s3", body, hashlib.sha256).hexdigest()
    assert verify(forge, {header: good}, body, ["s3"])
    assert not verify(
        forge, {header: good.replace(good[0], "0" if good[0] != "0" else "1", 1)}, body, ["s3"]
    )


def test_gitlab_sends_the_token_itself() -> None:
    assert verify("gitlab", {"X-Gitlab-Token": "tok"}, b"{}", ["tok"])
    assert not verify("gitlab", {"X-Gitlab-Token": "tok2"}, b"{}", ["tok"])
    assert not verify("gitlab", {}, b"{}", ["tok"])


def test_events_and_deliveries_by_forge() -> None:
    assert event_of("github", {"X-GitHub-Event": "push"}) == "push"
    assert event_of("gitlab", {"X-Gitlab-Event": "Push Hook"}) == "push"
    assert event_of("gitea", {"X-Gitea-Event": "ping"}) == "ping"
    assert delivery_of("forgejo", {"X-Forgejo-Delivery": "d1"}) == "d1"
    assert delivery_of("gitlab", {"X-Gitlab-Event-UUID": "u1"}) == "u1"


def test_the_push_payload() -> None:
    push = parse_push((VECTORS / "github-push.json").read_bytes())
    assert push.branch == "main"
    assert push.after == "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
    assert "stacks/platform/monitoring/compose.yaml" in push.changed
    assert parse_push(b'{"ref": "refs/tags/v1"}').branch == ""
    with pytest.raises(ValueError):
        parse_push(b"[1, 2]")


def test_deliveries_are_remembered_for_a_day_and_bounded() -> None:
    seen = Deliveries(ttl=100.0, limit=3)
    assert seen.first_time("a", 0.0)
    assert not seen.first_time("a", 50.0)
    assert seen.first_time("a", 150.0)  # a day later it counts again
    for name in ("b", "c", "d"):
        assert seen.first_time(name, 151.0)
    assert seen.first_time("a", 152.0)  # forgotten first when the table is full
