"""How the plots tell the search spaces apart: a colour and a marker per registered space, in the
registry's order (a space added to :mod:`search_spaces` gets the next ones)."""

from __future__ import annotations

from search_spaces import list_spaces

_COLOURS = ("#d73027", "#4575b4", "#1a9850", "#984ea3", "#ff7f00")
_MARKERS = ("s", "o", "^", "D", "v")


def space_style(space: str) -> tuple[str, str]:
    """The (colour, marker) of ``space``; grey dots for a name outside the registry."""
    names = list_spaces()
    if space not in names:
        return "grey", "."
    i = names.index(space) % len(_COLOURS)
    return _COLOURS[i], _MARKERS[i]
