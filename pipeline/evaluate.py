"""The work of one trial after its parameters are sampled: fit the structure to the budget and
score it (:class:`Evaluator`), in a worker process beside the sampler (:class:`EvaluatorProcess`).

The worker imports the spec side only (spaces, graph, cost, paths), no torch."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

from nas.candidates import score
from nas.graph import lower, ops_arch_id
from pipeline.settings import Settings
from pipeline.storage import die_with_parent
from search_spaces import get_space


class Evaluator:
    """Fits a structure to the budget and scores it: the work of one trial after its parameters
    are sampled. Runs in a worker process beside the sampler; keeps the first result of every
    architecture, so none is scored twice."""

    def __init__(self, settings: Settings, known: Sequence[dict[str, Any]] = ()):
        self.settings = settings
        self.spaces = {name: get_space(name) for name in settings.spaces}
        self.by_arch = {r["arch_id"]: r for r in reversed(known) if r.get("feasible")}

    def evaluate(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        structure = dict(params)
        name = structure.pop("space", None) or next(iter(self.spaces))
        solved = self.spaces[name].solve(
            structure, s.budget, s.tolerance, s.input_size, s.classes, min_width=s.min_width
        )
        if solved.spec is None:
            return {
                "space": name,
                "feasible": False,
                "width": solved.width,
                "flops": solved.flops,
                "reason": solved.reason,
                "trial": number,
            }
        ops = lower(solved.spec)
        aid = ops_arch_id(ops)
        first = self.by_arch.get(aid)
        if first is not None:
            return {**first, "duplicate_of": first["trial"]}
        result = {
            "space": name,
            "feasible": True,
            "width": solved.width,
            "trial": number,
            **score(ops, s.scorer, aid),
        }
        self.by_arch[aid] = result
        return result


def _evaluate_forever(parent: int, settings: Settings, known: list[dict[str, Any]], conn) -> None:
    die_with_parent(parent)
    evaluator = Evaluator(settings, known)
    while (job := conn.recv()) is not None:
        conn.send(evaluator.evaluate(*job))


class EvaluatorProcess:
    """An :class:`Evaluator` in a worker process, fed one trial at a time."""

    def __init__(self, settings: Settings, known: list[dict[str, Any]]):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_evaluate_forever,
            args=(os.getpid(), settings, known, child),
            name="nas-evaluator",
            daemon=True,
        )
        self.process.start()

    def submit(self, number: int, params: dict[str, Any]) -> None:
        self.conn.send((number, params))

    def result(self) -> dict[str, Any]:
        try:
            return self.conn.recv()
        except EOFError:
            raise RuntimeError(
                f"the evaluator process stopped (exit code {self.process.exitcode}); "
                "the finished trials are in the study, continue with --resume"
            ) from None

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()
