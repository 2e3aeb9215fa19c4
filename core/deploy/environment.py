"""A stack's environment file, as Komodo writes it. Pure.

The ``environment`` value is read as Komodo reads it by :mod:`core.resources.envtext` (its
``env_vars_deserializer`` and ``parse_key_value_list``: comments, ``" #"``, ``//``, ``KEY:
value``, quotes kept on the value). What is written (``lib/environment``,
``write_env_file``; :func:`env_file_text`): ``variable=value`` per line, joined by ``\\n``,
ending in ``\\n``; no variables, no file. Nothing is quoted or escaped: ``${VAR}``, ``$$`` and
quotes reach Compose (or the shell that sources the file for ``docker stack deploy``) exactly
as written.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.resources.envtext import EnvLine, EnvProblem, parse_lines


class EnvironmentLineError(ValueError):
    """A line of ``environment`` Komodo would refuse (the message says which and why)."""


def parse_environment(text: str) -> list[EnvLine]:
    """The variables of ``text``, in order, duplicates kept; :class:`EnvironmentLineError`
    names the first line (1-based, in ``text``) that has neither ``=`` nor ``:``."""
    out: list[EnvLine] = []
    for item in parse_lines(text):
        if isinstance(item, EnvProblem):
            raise EnvironmentLineError(
                f"environment line {item.index + 1}: {item.text!r} has no '=' or ':'"
                " (write KEY=value)"
            )
        out.append(item)
    return out


def env_file_text(variables: Iterable[EnvLine]) -> str:
    """Komodo's ``write_env_file`` contents: ``variable=value`` lines ending in ``\\n``; ""
    when there are no variables (then no file is written)."""
    contents = "\n".join(f"{v.variable}={v.value}" for v in variables)
    return contents if not contents or contents.endswith("\n") else contents + "\n"
