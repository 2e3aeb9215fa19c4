"""``did you mean``: the closest known name to a misspelt one.

:mod:`difflib`'s ratio alone misses short names with two letters swapped (``nsa`` for ``nas``
scores 0.67), so a name within one edit (insert, delete, replace, or swap of two neighbours;
two edits for names of eight letters or more) comes first, then a case-insensitive match, then
difflib's best above 0.7.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_DIGITS = re.compile(r"\d+")


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal string alignment distance (Damerau-Levenshtein without repeated edits of one
    substring), stopping early at ``limit`` (returns ``limit`` when it is reached)."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) >= limit:
            return limit
        prev2, prev = prev, cur
    return min(prev[-1], limit)


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name ``word`` most likely stands for, or None."""
    digitless = _DIGITS.sub("", word)
    # names that differ only in digits (DISK_1, DISK_2) are siblings, not misspellings
    names = sorted({k for k in known if k != word and _DIGITS.sub("", k) != digitless})
    if not names or not word:
        return None
    folded = [k for k in names if k.casefold() == word.casefold()]
    if folded:
        return folded[0]
    allowed = 2 if len(word) >= 8 else 1
    best = min(names, key=lambda k: (edit_distance(word, k), k))
    if edit_distance(word, best) <= allowed and len(word) > 2 * allowed:
        return best
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.7)
    return close[0] if close else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``' (did you mean "x"?)'`` for a near miss, else ``''``."""
    match = closest(word, known)
    return f' (did you mean "{match}"?)' if match else ""
