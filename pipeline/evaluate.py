"""The work of one trial after its parameters are sampled: fit the structure to the budget and
score it (:class:`Evaluator`), in worker processes beside the sampler (:class:`EvaluatorPool`,
``--workers`` of them, fed batches of structures).

The workers import the spec side only (spaces, graph, cost, paths), no torch."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from nas.core.candidates import score
from nas.core.graph import lower, ops_arch_id
from pipeline.settings import Settings
from pipeline.storage import ctrl_c_held, die_with_parent
from search_spaces import get_space


class Evaluator:
    """Fits a structure to the budget and scores it: the work of one trial after its parameters
    are sampled. Keeps the architectures it has scored: one met again (another structure, same
    graph) comes back as ``{"arch_id", "feasible", "repeat": True, "key", "storage_mbit"}``
    without a second scoring."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.spaces = {name: get_space(name) for name in settings.spaces}
        self.scored: dict[str, dict[str, Any]] = {}  # arch id -> its key and storage

    def evaluate(self, params: dict[str, Any]) -> dict[str, Any]:
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
            }
        ops = lower(solved.spec)
        aid = ops_arch_id(ops)
        if aid in self.scored:
            return {"arch_id": aid, "feasible": True, "repeat": True, **self.scored[aid]}
        row = score(ops, s.scorer, aid)
        self.scored[aid] = {"key": row["key"], "storage_mbit": row["storage_mbit"]}
        return {"space": name, "feasible": True, "width": solved.width, **row}


_evaluator: Evaluator | None = None


def _start_worker(parent: int, settings: Settings) -> None:
    global _evaluator
    die_with_parent(parent)
    _evaluator = Evaluator(settings)


def _evaluate_batch(batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_evaluator.evaluate(params) for params in batch]


class EvaluatorPool:
    """``workers`` processes, each an :class:`Evaluator`, fed batches of structures; the results
    of a batch come back in its order (:meth:`submit` returns a future)."""

    def __init__(self, settings: Settings, workers: int):
        with ctrl_c_held():
            self.executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(), settings),
            )

    def submit(self, batch: Sequence[dict[str, Any]]) -> Future:
        with ctrl_c_held():  # the executor starts its workers as batches arrive
            return self.executor.submit(_evaluate_batch, list(batch))

    @staticmethod
    def result(future: Future) -> list[dict[str, Any]]:
        try:
            return future.result()
        except BrokenProcessPool:
            raise RuntimeError(
                "an evaluator process stopped; the finished trials are in the study, "
                "continue with --resume"
            ) from None

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
