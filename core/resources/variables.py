"""``[[NAME]]`` interpolation of variables and core-held secrets, with masking.

A value may refer to a ``[[variable]]`` of the resource files or to a secret held by the core
(its config's ``[secrets]``). Variables marked ``is_secret`` and core secrets are *secret*: their
values are substituted only where a deploy needs them (:func:`interpolate`) and everything meant
for people, logs, events or stored plans goes through :func:`mask` or is built from the template,
never from the substituted text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from core.deploy.masking import MASK, Masker
from core.exceptions import UnknownVariable

__all__ = ["MASK", "PATTERN", "Values", "references"]
PATTERN: Final = re.compile(r"\[\[\s*([A-Za-z0-9_.\-]+)\s*\]\]")


def references(text: str) -> list[str]:
    """The names ``[[NAME]]`` refers to in ``text``, in order of first use."""
    if "[[" not in text:
        return []
    return list(dict.fromkeys(m.group(1) for m in PATTERN.finditer(text)))


class Values:
    """The names a core can interpolate: variables and secrets, and which of them are secret."""

    __slots__ = ("_values", "_secret", "_masker")

    def __init__(
        self,
        variables: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        secret_variables: Iterable[str] = (),
    ) -> None:
        self._values: dict[str, str] = dict(variables or {})
        self._values.update(secrets or {})
        self._secret = set(secrets or {}) | set(secret_variables)
        self._masker: Masker | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def is_secret(self, name: str) -> bool:
        return name in self._secret

    def secret_values(self) -> list[str]:
        return sorted(
            (self._values[n] for n in self._secret if self._values.get(n)), key=len, reverse=True
        )

    def interpolate(self, text: str, *, where: str = "") -> str:
        """``text`` with every reference replaced; raises :class:`UnknownVariable`."""

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self._values:
                raise UnknownVariable(
                    f"{where + ': ' if where else ''}[[{name}]] is neither a variable nor a"
                    " secret known to the core; define it with [[variable]] or in the core's"
                    " [secrets]"
                )
            return self._values[name]

        return PATTERN.sub(sub, text)

    def render_masked(self, text: str) -> str:
        """``text`` with variables substituted and secrets shown as ``***`` (unknown kept)."""

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in self._secret:
                return MASK
            return self._values.get(name, m.group(0))

        return PATTERN.sub(sub, text)

    def masker(self) -> Masker:
        """The masker of the secret values (``core.deploy.masking``): whole text or streams."""
        if self._masker is None:
            self._masker = Masker(self.secret_values())
        return self._masker

    def mask(self, text: str) -> str:
        """Hide every secret value in ``text`` (output, logs): as it is, line by line for a
        multi-line value, and as string escapes write it."""
        return self.masker().mask(text)
