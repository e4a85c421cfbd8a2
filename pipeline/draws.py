"""Drawing structures from the search spaces without Optuna's per-trial bookkeeping: random,
quasi-random (scrambled Sobol) and exhaustive enumeration (docs/design.md section 6).

A space samples a structure by asking a trial for one choice after another
(``suggest_categorical``, ``suggest_int``); the next question may depend on the answers so far
(a chain block asks for its shortcut edges, a fractal block for its columns). :class:`Draw` is a
trial that answers from a *chooser*, a function from the number of options to the index taken:
random draws choose with a seeded generator, quasi-random draws with the coordinates of a Sobol
point (the i-th question of a draw reads coordinate i), and enumeration walks the tree of choices
like an odometer. A draw costs microseconds, against about a millisecond for an Optuna
``ask`` with its storage, so the search can look at as many structures as the scorer can score.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from search_spaces import SearchSpace

STREAM_SAMPLERS = ("random", "qmc", "exhaustive")
SOBOL_DIMENSIONS = 32  # more than any space asks questions (ResNet: 21 with the space's)
SOBOL_BATCH = 256  # points drawn at a time (a power of 2 keeps Sobol's balance)

_distributions: dict[tuple, BaseDistribution] = {}


def _distribution(kind: str, *args: Any) -> BaseDistribution:
    """One shared distribution object per question (they are many, and pickled with every
    candidate that goes to the study writer)."""
    d = _distributions.get((kind, *args))
    if d is None:
        d = CategoricalDistribution(args[0]) if kind == "cat" else IntDistribution(*args)
        _distributions[(kind, *args)] = d
    return d


class Draw:
    """A trial-like object that answers a space's questions from ``choose(n) -> index``, and
    records the answers (``params``) with their Optuna distributions (for the study)."""

    def __init__(self, choose: Callable[[int], int]):
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self._choose = choose

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = tuple(choices)
        value = choices[self._choose(len(choices))]
        self.params[name] = value
        self.distributions[name] = _distribution("cat", choices)
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        value = low + self._choose(high - low + 1)
        self.params[name] = value
        self.distributions[name] = _distribution("int", low, high)
        return value


def structure_key(params: Mapping[str, Any]) -> str:
    """The identity of a drawn structure (its space included): equal keys, equal structures."""
    return json.dumps(params, sort_keys=True)


def sample_structure(trial: Any, spaces: Mapping[str, SearchSpace]) -> dict[str, Any]:
    """Ask ``trial`` (an Optuna trial or a :class:`Draw`) for a structure: the space first when
    there are several, then the space's own questions. Returns the trial's parameters."""
    names = list(spaces)
    name = trial.suggest_categorical("space", names) if len(names) > 1 else names[0]
    spaces[name].sample(trial)
    return trial.params


def space_size(spaces: Mapping[str, SearchSpace]) -> int:
    """How many distinct structures the spaces hold together."""
    return sum(space.size() for space in spaces.values())


def random_draws(spaces: Mapping[str, SearchSpace], seed: int) -> Iterator[Draw]:
    """Endless random draws: each question answered uniformly, from a generator seeded once."""
    rng = random.Random(seed)
    while True:
        draw = Draw(rng.randrange)
        sample_structure(draw, spaces)
        yield draw


def sobol_draws(spaces: Mapping[str, SearchSpace], seed: int) -> Iterator[Draw]:
    """Endless quasi-random draws: the i-th question of a draw answered by coordinate i of a
    scrambled Sobol point (Owen scrambling, seeded), ``floor(u * n)`` of its ``n`` options. The
    first questions (space, downsampling, block kind, ...) are balanced far better than by
    random draws; questions past :data:`SOBOL_DIMENSIONS` fall back to random answers."""
    from scipy.stats import qmc  # noqa: PLC0415 - scipy is Optuna's dependency; only this needs it

    engine = qmc.Sobol(d=SOBOL_DIMENSIONS, scramble=True, seed=seed)
    rng = random.Random(seed)
    while True:
        for point in engine.random(SOBOL_BATCH):
            coords = iter(point.tolist())

            def choose(n: int, coords=coords) -> int:
                u = next(coords, None)
                return rng.randrange(n) if u is None else min(int(u * n), n - 1)

            draw = Draw(choose)
            sample_structure(draw, spaces)
            yield draw


def enumerate_draws(spaces: Mapping[str, SearchSpace]) -> Iterator[Draw]:
    """Every structure of the spaces once, in a fixed order: an odometer over the tree of
    choices (the last question turns fastest; when it has run through its options the one
    before it advances, and the questions after that are asked afresh)."""
    path: list[list[int]] = []  # [index taken, number of options] of each question so far
    while True:
        depth = 0

        def choose(n: int) -> int:
            nonlocal depth
            if depth == len(path):
                path.append([0, n])
            depth += 1
            return path[depth - 1][0]

        draw = Draw(choose)
        sample_structure(draw, spaces)
        yield draw
        del path[depth:]
        while path and path[-1][0] + 1 == path[-1][1]:
            path.pop()
        if not path:
            return
        path[-1][0] += 1


def stream(sampler: str, spaces: Mapping[str, SearchSpace], seed: int) -> Iterator[Draw]:
    """The draws of a stream sampler (``random``, ``qmc`` or ``exhaustive``), repeats included
    (the search skips them)."""
    if sampler == "random":
        return random_draws(spaces, seed)
    if sampler == "qmc":
        return sobol_draws(spaces, seed)
    if sampler == "exhaustive":
        return enumerate_draws(spaces)
    raise ValueError(f"unknown stream sampler {sampler!r}; known: {', '.join(STREAM_SAMPLERS)}")
