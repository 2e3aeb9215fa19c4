"""A stack's ``environment`` as Komodo reads it and writes it to the env file. Pure.

Each rule is Komodo's (moghtech/komodo), cited where it is matched:

- The value (``deserializers/environment.rs``, ``env_vars_deserializer``): a string is kept as
  written, with a final newline added; an array of ``{variable, value}`` tables becomes one
  ``  variable = value`` line each (:func:`environment_text`).
- Its lines (``parsers.rs``, ``parse_key_value_list``; :func:`parse_environment`): the text is
  cut at ``\\n``; each line is trimmed; empty lines and lines starting with ``#`` or ``//`` are
  skipped; an end-of-line comment starts at ``" #"`` (a space, then ``#``: ``a#b`` stays); a
  leading ``-`` (YAML list) goes; the key ends at the first ``=`` or ``:``; key and value are
  trimmed; quotes stay on the value (``K="v"`` is written ``K="v"``, and Compose removes them),
  except that a line quoted as a whole (``'K = v'``) loses its outer quotes. A line with neither
  ``=`` nor ``:`` is an error.
- The file (``lib/environment``, ``write_env_file``; :func:`env_file_text`): ``variable=value``
  per line, joined by ``\\n``, ending in ``\\n``; no variables, no file. Nothing is quoted or
  escaped: ``${VAR}``, ``$$`` and quotes reach Compose (or the shell that sources the file for
  ``docker stack deploy``) exactly as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

QUOTES = ("'", '"')


class EnvironmentLineError(ValueError):
    """A line of ``environment`` Komodo would refuse (the message says which and why)."""


@dataclass(frozen=True)
class EnvironmentVar:
    variable: str
    value: str


def environment_text(value: str | Iterable[Mapping[str, object]]) -> str:
    """The ``environment`` field as Komodo stores it: a string (a final newline added), or an
    array of ``{variable, value}`` tables as ``  variable = value`` lines."""
    if isinstance(value, str):
        return value if not value or value.endswith("\n") else value + "\n"
    lines = [f"  {item.get('variable', '')} = {item.get('value', '')}" for item in value]
    return "\n".join(lines) + ("\n" if lines else "")


def parse_environment(text: str) -> list[EnvironmentVar]:
    """Komodo's ``parse_key_value_list``: the variables of ``text``, in order, duplicates kept.

    Raises :class:`EnvironmentLineError` naming the line (1-based, in ``text``) that has neither
    ``=`` nor ``:``."""
    out: list[EnvironmentVar] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("//"):
            continue
        line = line.split(" #", 1)[0].strip().lstrip("-").strip()
        key, value, found = _split_assignment(line)
        if not found:
            raise EnvironmentLineError(
                f"environment line {number}: {raw.strip()!r} has no '=' or ':' (write KEY=value)"
            )
        key, value = key.strip(), value.strip()
        if key.startswith(QUOTES) and not key.endswith(QUOTES) and value.endswith(QUOTES):
            key, value = key[1:].strip(), value[:-1].strip()
        out.append(EnvironmentVar(key, value))
    return out


def _split_assignment(line: str) -> tuple[str, str, bool]:
    """``split_once(['=', ':'])``: cut at the first of either."""
    cuts = [i for i in (line.find("="), line.find(":")) if i >= 0]
    if not cuts:
        return line, "", False
    at = min(cuts)
    return line[:at], line[at + 1 :], True


def env_file_text(variables: Iterable[EnvironmentVar]) -> str:
    """Komodo's ``write_env_file`` contents: ``variable=value`` lines ending in ``\\n``; ""
    when there are no variables (then no file is written)."""
    contents = "\n".join(f"{v.variable}={v.value}" for v in variables)
    return contents if not contents or contents.endswith("\n") else contents + "\n"
