"""Where a swarm secret's value comes from: an environment variable, a file, or stdin.

A value is read when the secrets step runs, kept in memory only, and never shown: errors name
the secret and its source, not what was read. A file's or stdin's one trailing newline is
dropped (``echo VALUE > FILE`` gives the value); an environment variable is taken as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from core.bootstrap.config import SecretSpec
from core.exceptions import BootstrapFailed

STEP = "secrets"


def _strip_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def read_secret(
    spec: SecretSpec, environ: Mapping[str, str], read_stdin: Callable[[], bytes]
) -> bytes:
    """The secret's value; raises ``BootstrapFailed`` (step ``secrets``) saying what to fix."""
    where = f"secret {spec.name!r}"
    if spec.env:
        value = environ.get(spec.env)
        if value is None:
            raise BootstrapFailed(
                STEP,
                f"{where}: the environment variable {spec.env} is not set",
                f"export {spec.env}=... (the value is never shown)",
            )
        data = value.encode()
    elif spec.file:
        try:
            data = _strip_newline(Path(spec.file).read_bytes())
        except OSError as exc:
            raise BootstrapFailed(
                STEP,
                f"{where}: cannot read {spec.file}: {exc.strerror or exc}",
                f"put the value in {spec.file} (readable by this user)",
            ) from exc
    else:
        data = _strip_newline(read_stdin())
    if not data:
        raise BootstrapFailed(
            STEP, f"{where}: the value from {spec.source} is empty", "give it a value"
        )
    return data
