"""The one-line message for a name that is not registered (a model, a scorer, a search space)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(kind: str, name: str, known: Iterable[str], otherwise: str) -> str:
    """``unknown <kind> '<name>'; did you mean a, b?`` with the close matches, else ``otherwise``
    (where the user can find the names)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else otherwise
    return f"unknown {kind} {name!r}; {hint}"


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes, newlines, ...) shown as
    ``\\x1b``-style escapes instead of being obeyed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
