"""The search loop: Optuna samples structures, a worker process scores them, and every finished
trial is written to the persistent study (:class:`Search`).

Reproducible and resumable: the sampler is reseeded from (seed, number of finished trials) before
each trial, and a trial reaches the study database in one transaction once it is finished. A run
killed at any point resumes with ``--resume RUN_DIR`` and ends with exactly the requested trials
and the same results as an uninterrupted run. The sampler works on an in-memory mirror of the
study (fast), and every finished trial is added to the persistent study (SQLite in the run
directory, or ``--storage URL``), which Optuna's own tools read.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from pipeline.evaluate import EvaluatorProcess
from pipeline.ranking import sort_key
from pipeline.settings import Settings
from pipeline.storage import StudyWriter, open_study
from search_spaces import get_space

PENALTY = 1e18  # objective of an infeasible trial (its constraint marks it infeasible too)


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def _step_seed(seed: int, finished: int) -> int:
    return (seed * 1_000_003 + finished) % 2**32


def _objective(key: Sequence[float]) -> float:
    """A scalar for the sampler to minimise: the key's first value dominates, then the second,
    then the third (keys have one to three values). Ranking uses the exact lexicographic key;
    this only guides the sampler."""
    k = [v if math.isfinite(v) else PENALTY for v in key[:3]]
    return min(PENALTY, sum(v * 1e3 ** (1 - i) for i, v in enumerate(k)))


@dataclass
class _Pending:
    """A trial whose parameters are sampled and whose result is coming."""

    trial: Any
    result: dict[str, Any] | None = None  # known already (a repeated structure, or resumed)
    persisted: bool = False


class Search:
    """One run's search loop over a persistent study and its in-memory mirror.

    Sampling (Optuna, in this process) and evaluating (width solving and scoring, in a worker
    process) overlap: trial t + 1 is sampled while trial t is evaluated, so the sampler always
    sees trial t as running. The order of these steps is fixed, so a run is reproducible; on
    resume, the last finished trial is put back as running before the next one is sampled."""

    def __init__(self, settings: Settings, run_dir: Path):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.settings = settings
        self.run_dir = run_dir
        self.spaces = {name: get_space(name) for name in settings.spaces}
        self.url = settings.study_url(run_dir)
        self.study = open_study(
            self.url,
            settings.study_name,
            where=settings.study_where(run_dir),
            fix=settings.study_fix,
        )
        self.mirror = optuna.create_study(directions=settings.directions)
        finished = self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        self.known = [t.user_attrs["result"] for t in finished]
        self.results = self.known[:-1]  # the last one is finished again as pending, below
        self.by_structure: dict[str, dict[str, Any]] = {}
        for t in finished:
            self.by_structure.setdefault(
                json.dumps(t.params, sort_keys=True), t.user_attrs["result"]
            )
        self.pending: _Pending | None = None
        if finished:  # the state in which the next trial was sampled: the last one running
            self.mirror.add_trials(finished[:-1])
            last = finished[-1]
            self.mirror.enqueue_trial(last.params)
            trial = self.mirror.ask()
            self._sample(trial)
            self.pending = _Pending(trial, last.user_attrs["result"], persisted=True)

    @property
    def finished(self) -> int:
        return len(self.results)

    @property
    def by_arch(self) -> dict[str, dict[str, Any]]:
        first: dict[str, dict[str, Any]] = {}
        for r in self.results:
            if r["feasible"]:
                first.setdefault(r["arch_id"], r)
        return first

    def _sample(self, trial) -> dict[str, Any]:
        names = list(self.spaces)
        name = trial.suggest_categorical("space", names) if len(names) > 1 else names[0]
        self.spaces[name].sample(trial)
        return trial.params

    def _finish(self, pending: _Pending, evaluator: EvaluatorProcess, writer: StudyWriter):
        result = pending.result if pending.result is not None else evaluator.result()
        trial = pending.trial
        if not result["feasible"]:
            # Only infeasible trials carry the constraint: the samplers read a trial without one
            # as feasible, and skip the bookkeeping for it.
            low, high = self.settings.band
            flops = result["flops"]
            trial.set_constraint("flops_band", max(flops - high, low - flops) / high)
        trial.set_user_attr("result", result)
        if not result["feasible"]:
            values = [PENALTY] * len(self.study.directions)
        else:
            key = [math.inf if v is None else v for v in result["key"]]
            values = [_objective(key), result["storage_mbit"]][: len(self.study.directions)]
        frozen = self.mirror.tell(trial, values)
        if not pending.persisted:
            writer.put(frozen)
        self.results.append(result)
        self.by_structure.setdefault(json.dumps(frozen.params, sort_keys=True), result)
        return result

    def _submit(self, trial, evaluator: EvaluatorProcess) -> _Pending:
        seen = self.by_structure.get(json.dumps(trial.params, sort_keys=True))
        if seen is not None:  # the same parameters again: same architecture, same score
            return _Pending(trial, {**seen, "duplicate_of": seen["trial"]})
        evaluator.submit(trial.number, trial.params)
        return _Pending(trial)

    def run(self, progress: bool = True) -> None:
        total = self.settings.trials
        bar = tqdm(
            total=total,
            initial=min(self.finished, total),
            disable=not progress,
            unit="trial",
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5,
        )
        start, done_here = time.perf_counter(), 0
        best = min(
            (r["key"] for r in self.results if r["feasible"]),
            default=None,
            key=lambda k: sort_key({"key": k}),
        )
        arch_ids = {r["arch_id"] for r in self.results if r["feasible"]}
        arch_ids_before = len(arch_ids)
        writer = StudyWriter(self.url, self.settings.study_name)
        evaluator = EvaluatorProcess(self.settings, self.known)
        try:
            while True:
                asked = self.finished + (self.pending is not None)
                trial = None
                if asked < total:
                    self.mirror.sampler = _sampler(
                        self.settings.sampler, _step_seed(self.settings.seed, asked)
                    )
                    trial = self.mirror.ask()
                    self._sample(trial)
                if self.pending is not None:
                    was_done = self.pending.persisted
                    result = self._finish(self.pending, evaluator, writer)
                    self.pending = None
                    bar.update(1)
                    if not was_done:
                        done_here += 1
                        if result["feasible"] and (
                            best is None or sort_key(result) < sort_key({"key": best})
                        ):
                            best = result["key"]
                        if result["feasible"]:
                            arch_ids.add(result["arch_id"])
                        elapsed = time.perf_counter() - start
                        bar.set_postfix_str(
                            f"best N=({_format_key(best)}) M  {len(arch_ids)} candidates, "
                            f"{(len(arch_ids) - arch_ids_before) / elapsed:.1f}/s"
                        )
                if trial is None:
                    break
                self.pending = self._submit(trial, evaluator)
        finally:
            evaluator.close()
            bar.close()
        writer.close()


def _format_key(key) -> str:
    if key is None:
        return "-"
    return ", ".join("-" if v is None else f"{v / 1e6:.3g}" for v in key)
