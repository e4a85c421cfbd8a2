"""Named things: a registry of them (models, scorers, search spaces), the one-line message for a
name that is not registered, and names made safe to print."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown_name(kind: str, name: str, known: Iterable[str], otherwise: str) -> str:
    """``unknown <kind> '<name>'; did you mean a, b?`` with the close matches, else ``otherwise``
    (where the user can find the names)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else otherwise
    return f"unknown {kind} {name!r}; {hint}"


class UnknownNameError(KeyError):
    """A name that is not registered. The message (``args[0]``, ``message``, and ``str``, which a
    plain KeyError would quote) names the closest registered names."""

    @property
    def message(self) -> str:
        return self.args[0]

    def __str__(self) -> str:
        return self.message


class Registry(Generic[T]):
    """Things of one ``kind`` registered by name: :meth:`register` (a decorator too: a function
    is registered under its name), :meth:`get` (an unknown name raises ``error`` with a
    did-you-mean message), :meth:`names` (sorted, filtered by a shell-style pattern).

    ``where`` tells the user where the names are listed, for a name that is close to none; by
    default ``known: a, b, c`` in registration order. A callable is asked when it is needed."""

    def __init__(
        self,
        kind: str,
        where: str | Callable[[], str] | None = None,
        error: Callable[[str], KeyError] = UnknownNameError,
    ):
        self.kind = kind
        self._where = where
        self._error = error
        self._items: dict[str, T] = {}

    def register(self, item: T, name: str | None = None) -> T:
        """Register ``item`` under ``name`` (default: its ``__name__``) and return it; a name is
        registered once (a ValueError the second time)."""
        name = item.__name__ if name is None else name  # type: ignore[attr-defined]
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        """Forget ``name`` (a test's temporary registration)."""
        del self._items[self._check(name)]

    def get(self, name: str) -> T:
        return self._items[self._check(name)]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(fnmatch.filter(self._items, pattern))

    def _check(self, name: str) -> str:
        if name not in self._items:
            where = self._where() if callable(self._where) else self._where
            if where is None:
                where = f"known: {', '.join(self._items)}"
            raise self._error(unknown_name(self.kind, name, self._items, where))
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        """The names in registration order."""
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes, newlines, ...) shown as
    ``\\x1b``-style escapes instead of being obeyed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
