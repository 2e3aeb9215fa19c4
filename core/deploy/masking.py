"""Masking secret values in text, whole or as a stream (pure: text in, text out).

What is masked, for each secret value (``Masker(values)``):

- the value itself, wherever it occurs;
- each line of a multi-line value (a PEM key) on its own, once stripped, when it is at least
  :data:`MIN_PART` characters long: a tool that prints one line of the key, or indents every
  line (``  | line``), still shows none of it;
- the value as the usual escapings write it (a JSON or Python string's backslash escapes, e.g.
  ``bs\\\\SECRET`` for ``bs\\SECRET``, ``\\n`` for a newline; a quote inside a shell word quoted
  by ``shlex.quote``), when that differs from the value.

The longest form wins where several match at the same place; every match becomes
:data:`MASK`.

A stream (deploy output arriving in chunks, a line cut at the periphery's 64 KiB) is masked
with ``Masker.stream()``: each ``feed`` returns the text that is safe to release and holds back
the shortest tail that could still become a secret with what comes next; ``end`` releases the
rest. The released pieces, joined, are what ``mask`` makes of the whole text, except that a
stream that stops inside a secret (its first :data:`MIN_HELD_AT_END` characters or more) has
that part masked too.
``OutputMasker`` does the same for bytes, decoding UTF-8 incrementally (a character cut between
chunks is decoded whole), and releases whole lines.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable
from typing import Final

MASK: Final = "***"
MIN_PART: Final = 6
"""Shorter lines of a multi-line secret are not masked on their own: ``}`` or ``-----`` would
mask half the output and tell nothing."""
LINE_LIMIT: Final = 64 * 1024
"""``OutputMasker`` releases a partial line once this many characters of it wait."""
MIN_HELD_AT_END: Final = 3
"""A stream that ends in a secret's first characters: that many or more are masked."""


def secret_forms(values: Iterable[str]) -> list[str]:
    """Every text to mask for ``values``, longest first (empty values are not secrets)."""
    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        forms.add(value)
        if "\n" in value or "\r" in value:
            for line in value.splitlines():
                part = line.strip()
                if len(part) >= MIN_PART:
                    forms.add(part)
        shell = value.replace("'", "'\"'\"'")  # inside shlex.quote's single quotes
        for escaped in (json.dumps(value)[1:-1], repr(value)[1:-1], shell):
            if escaped != value:
                forms.add(escaped)
    return sorted(forms, key=lambda f: (-len(f), f))


class Masker:
    """Masks the secret ``values`` in text; ``stream()`` for text that arrives in pieces."""

    __slots__ = ("forms", "_pattern", "_starts", "_longest")

    def __init__(self, values: Iterable[str]) -> None:
        self.forms = secret_forms(values)
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in self.forms)) if self.forms else None
        )
        starts: dict[str, list[str]] = {}
        for form in self.forms:
            starts.setdefault(form[0], []).append(form)
        self._starts = starts
        self._longest = len(self.forms[0]) if self.forms else 0

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        """``text`` with every secret form replaced by :data:`MASK`."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def stream(self) -> StreamMasker:
        return StreamMasker(self)

    def output(self) -> OutputMasker:
        return OutputMasker(self)

    def _hold_from(self, text: str, start: int) -> int:
        """The first position at or after ``start`` from which ``text`` is a proper prefix of
        a secret form (what follows may complete it); ``len(text)`` when there is none."""
        end = len(text)
        starts = self._starts
        for i in range(max(start, end - self._longest + 1), end):
            candidates = starts.get(text[i])
            if candidates is None:
                continue
            rest = text[i:]
            if any(len(f) > len(rest) and f.startswith(rest) for f in candidates):
                return i
        return end

    def _mask_end(self, text: str) -> str:
        """``mask(text)`` for the end of a stream: a tail that is the first characters of a
        secret (the stream stopped inside it) is masked too, when long enough to matter."""
        masked = self.mask(text)
        after = masked.rfind(MASK)
        start = after + len(MASK) if after >= 0 else 0
        hold = self._hold_from(masked, start)
        if len(masked) - hold >= MIN_HELD_AT_END:
            return masked[:hold] + MASK
        return masked


class StreamMasker:
    """One stream's masking: ``feed`` each piece in order, then ``end``."""

    __slots__ = ("_masker", "_held")

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = ""

    @property
    def held(self) -> int:
        """Characters held back, waiting for what follows."""
        return len(self._held)

    def feed(self, text: str) -> str:
        """The masked text that can be released now (possibly ""); the rest is held."""
        masker = self._masker
        pattern = masker._pattern
        if pattern is None:
            return text
        buffer = self._held + text if self._held else text
        out: list[str] = []
        pos = 0
        while True:
            hold = masker._hold_from(buffer, pos)
            found = pattern.search(buffer, pos)
            if found is None or found.start() >= hold:
                out.append(buffer[pos:hold])
                self._held = buffer[hold:]
                return "".join(out)
            out.append(buffer[pos : found.start()])
            out.append(MASK)
            pos = found.end()

    def end(self) -> str:
        """What is still held, released at the end of the stream."""
        held, self._held = self._held, ""
        return self._masker._mask_end(held) if held else ""


class OutputMasker:
    """A stream of bytes (a command's stdout or stderr) decoded as UTF-8 and masked, released
    in whole lines: a line that a hold cut in two is released once it is complete (or once
    ``line_limit`` characters of it wait), so each piece reads as the lines it shows."""

    __slots__ = ("_decoder", "_stream", "_line", "line_limit")

    def __init__(self, masker: Masker, line_limit: int = LINE_LIMIT) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stream = masker.stream()
        self._line = ""  # masked, released by the stream, waiting for the end of its line
        self.line_limit = line_limit

    def feed(self, data: bytes) -> str:
        text = self._line + self._stream.feed(self._decoder.decode(data))
        cut = text.rfind("\n") + 1
        if len(text) - cut > self.line_limit:
            cut = len(text)
        self._line = text[cut:]
        return text[:cut]

    def end(self) -> str:
        text = self._stream.feed(self._decoder.decode(b"", final=True)) + self._stream.end()
        line, self._line = self._line, ""
        return line + text
