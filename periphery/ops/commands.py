"""A stack's own commands (``pre_deploy``, ``post_deploy``) and words (``extra_args``), as
Komodo runs them. The rules are Komodo's (moghtech/komodo), each written once here:

- The shell (``lib/command``, ``shell``): ``/bin/bash``, else ``/usr/bin/bash``, ``/bin/sh``,
  ``/usr/bin/sh``, else ``sh`` from PATH; a command runs as ``SHELL -c TEXT``.
- Multi-line mode, the default (``parsers.rs``, ``parse_multiline_command``): lines are cut at
  ``\\n`` and trimmed; empty lines and ``#`` lines go; an end-of-line comment from ``" #"`` goes;
  ``" \\"`` joins a line with the next; what is left is joined with ``" && "`` so the lines run in
  order, in one shell, and the first failure stops the rest. Nothing left: nothing runs.
- ``shell_mode = true`` (``KomodoCommandMode::Shell``): the text as it is.
- Where (``api/compose.rs``, ``ComposeUp``): the run directory joined with ``path``
  (:meth:`periphery.paths.StackPaths.command_directory`).
- ``extra_args`` (``helpers.rs``, ``format_extra_args``): Komodo appends them, space-separated, to
  a shell line; here each is split into words as that shell would split it (quotes honoured) and
  passed as argv, with no expansion of ``$`` or globs.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from periphery.exceptions import CommandFailed, CommandTimeout, InvalidName, PreDeployFailed
from periphery.process import Emit, base_env, note, run

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0
_SHELLS = ("/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh")


@cache
def shell() -> str:
    """Komodo's ``shell()``: the first of bash and sh that exists."""
    for candidate in _SHELLS:
        if Path(candidate).exists():
            return candidate
    return "sh"


def parse_multiline_command(command: str) -> str:
    """Komodo's ``parse_multiline_command``: the lines joined with ``&&`` ("" when none)."""
    lines = [line.strip() for line in command.split("\n")]
    kept = [line.split(" #", 1)[0] for line in lines if line and not line.startswith("#")]
    joined = ""
    for piece in "\n".join(kept).split(" \\"):
        joined += " " + piece.strip()
    out = [line.strip() for line in joined.split("\n")]
    return " && ".join(
        line.split(" #", 1)[0].strip() for line in out if line and not line.startswith("#")
    )


def command_argv(command: str, shell_mode: bool) -> list[str] | None:
    """The argv that runs a ``pre_deploy``/``post_deploy`` command; None when nothing runs."""
    if shell_mode:
        return [shell(), "-c", command] if command.strip() else None
    parsed = parse_multiline_command(command)
    return [shell(), "-c", parsed] if parsed else None


def split_extra_args(extra_args: Sequence[str]) -> list[str]:
    """Each of ``extra_args`` split into words as a shell would (``--scale web=2`` is two)."""
    words: list[str] = []
    for arg in extra_args:
        try:
            words += shlex.split(arg)
        except ValueError as exc:
            raise InvalidName(f"extra_args {arg!r}: {exc}") from exc
    return words


async def run_command(
    argv: list[str],
    workdir: Path,
    stage: str,
    emit: Emit,
    time_limit: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a stack's command in ``workdir`` with the agent's base environment (plus ``env``).
    A non-zero exit, a timeout (the whole process group is killed) or a command that cannot
    start raises :class:`PreDeployFailed` naming ``stage``."""
    # The command as written (secrets in it are masked by the core, which knows them).
    await note(emit, f"$ {argv[-1]}  (in {workdir})")
    try:
        done = await run(argv, emit=emit, time_limit=time_limit, cwd=workdir, env=base_env(env))
    except CommandTimeout as exc:
        raise PreDeployFailed(f"{stage} timed out: {exc}") from exc
    except CommandFailed as exc:
        raise PreDeployFailed(f"{stage} could not start: {exc}") from exc
    if done.returncode != 0:
        raise PreDeployFailed(done.summary(stage))
    log.info("%s succeeded in %s", stage, workdir)
