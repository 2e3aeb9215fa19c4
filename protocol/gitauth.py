"""How a git account's token reaches git, for the core's git and the agents' alike. Pure.

Komodo puts the token into the clone URL (``https://token:TOKEN@host/repo``), where it shows in
``ps``, in ``.git/config`` and in any message that quotes the URL. Here it never does: git gets
a credential helper through its environment (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``, git 2.31 and
newer), a fixed shell function that prints the username and token from two environment variables,
scoped to the repository's scheme and host. The user's own helpers are switched off for that
git process (an empty ``credential.helper`` first), so none can store the token. The username is
Komodo's: ``token``, or the part before ``:`` when the token is written ``user:token``
(``RepoExecutionArgs::remote_url``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

USERNAME_VAR = "STACKWARD_GIT_USERNAME"
TOKEN_VAR = "STACKWARD_GIT_TOKEN"

HELPER = (
    '!f() { test "$1" = get || return 0; '
    f'printf "username=%s\\npassword=%s\\n" "${USERNAME_VAR}" "${TOKEN_VAR}"; }}; f'
)


def komodo_username(token: str) -> tuple[str, str]:
    """``(username, password)`` from a configured token, as Komodo splits it."""
    if ":" in token:
        user, secret = token.split(":", 1)
        return user.strip(), secret.strip()
    return "token", token.strip()


def scope(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL; "" for any other kind (no token is sent)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return f"{parts.scheme}://{host}"


def credential_env(url: str, username: str, token: str) -> dict[str, str]:
    """The environment that lets git authenticate to ``url`` with ``token``; empty when the URL
    is not http(s) (ssh and file URLs take no token)."""
    where = scope(url)
    if not where or not token:
        return {}
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": f"credential.{where}.helper",
        "GIT_CONFIG_VALUE_1": HELPER,
        USERNAME_VAR: username,
        TOKEN_VAR: token,
    }
