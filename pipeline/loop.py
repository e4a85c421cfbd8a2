"""The search loop: a sampler proposes structures, worker processes solve and score them, and
every new architecture in the band becomes a trial of the persistent study (:class:`Search`).

**A trial is a new architecture.** A structure drawn before is skipped before it costs anything;
the others are solved to the budget and scored in batches by ``--workers`` processes
(:class:`pipeline.evaluate.EvaluatorPool`). The run keeps the first structure of each
architecture whose FLOPs land in the band, a *candidate*, until it has ``--trials`` of them (or
the sampler has no new structure left); structures outside the band and second structures of an
architecture are counted (:class:`Counts`, in the report) but not recorded. Each candidate is one
trial of the persistent study (SQLite in the run directory, or ``--storage URL``), written in
bulk by a writer process (:mod:`pipeline.storage`), which Optuna's own tools read.

**Samplers.** ``qmc`` (the default), ``random`` and ``exhaustive`` draw structures directly
(:mod:`pipeline.draws`: microseconds a draw, so the cost of a candidate is its solving and
scoring, whatever the number of trials). ``tpe`` and ``nsga2`` are Optuna's model-based samplers,
for objectives that are not cheap: they ask an in-memory study :data:`MODEL_BATCH` trials at a
time and learn from every outcome, repeats and structures outside the band included; their cost
per trial grows with the trials they condition on.

**Reproducible and resumable.** What is proposed does not depend on the number of workers or on
timing: stream samplers draw from a generator seeded once, model-based ones are reseeded from
(seed, trials asked) before each batch, and results are taken in the order proposed. A killed run
resumes with ``--resume RUN_DIR``: the draws are replayed, the candidates already in the study are
taken from it without evaluation, and the run ends with the same candidates and counts as an
uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from pipeline.draws import STREAM_SAMPLERS, sample_structure, space_size, stream, structure_key
from pipeline.evaluate import EvaluatorPool
from pipeline.ranking import sort_key
from pipeline.settings import Settings
from pipeline.storage import StudyWriter, open_study
from search_spaces import SearchSpace, get_space

PENALTY = 1e18  # objective of an infeasible trial (its constraint marks it infeasible too)
STREAM_BATCH = 64  # structures per batch of a stream sampler
MODEL_BATCH = 8  # trials a model-based sampler is asked between two tells
# A sampler that proposes only structures drawn before for this many draws in a row has nothing
# new left to give (a model-based sampler that has converged; a nearly exhausted space).
STALL = 20_000


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def _step_seed(seed: int, asked: int) -> int:
    return (seed * 1_000_003 + asked) % 2**32


def _objective(key: Sequence[float]) -> float:
    """A scalar for the sampler to minimise: the key's first value dominates, then the second,
    then the third (keys have one to three values). Ranking uses the exact lexicographic key;
    this only guides the sampler."""
    k = [v if math.isfinite(v) else PENALTY for v in key[:3]]
    return min(PENALTY, sum(v * 1e3 ** (1 - i) for i, v in enumerate(k)))


@dataclass
class Counts:
    """Where the draws of a run went (each draw is exactly one of the last four)."""

    drawn: int = 0  # structures the sampler proposed
    repeats: int = 0  # drawn before: skipped without evaluation
    outside: int = 0  # no width puts its FLOPs in the band
    same_arch: int = 0  # another structure's architecture
    candidates: int = 0  # new architectures in the band: the run's trials


@dataclass
class Proposal:
    """A structure to evaluate: its parameters, their distributions (for the study), the repeats
    the sampler drew just before it, and the model-based sampler's trial to tell."""

    params: dict[str, Any]
    distributions: Mapping[str, Any]
    repeats_before: int = 0
    trial: Any = None
    key: str = field(init=False)

    def __post_init__(self):
        self.key = structure_key(self.params)


class _Proposer:
    """Proposes structures not drawn before: :meth:`propose` draws until it has ``n`` new ones
    (or the space or the sampler has none left); :meth:`observe` hears each one's outcome."""

    size: float = math.inf  # structures the spaces hold

    def _draw(self, repeats_before: int) -> Proposal | None:
        raise NotImplementedError

    def _repeated(self, proposal: Proposal) -> None:
        """A proposal drawn before, skipped."""

    def propose(self, n: int, seen: set[str]) -> list[Proposal]:
        out: list[Proposal] = []
        repeats = 0
        while len(out) < n and len(seen) < self.size and repeats < STALL:
            p = self._draw(repeats)
            if p is None:
                break
            if p.key in seen:
                repeats += 1
                self._repeated(p)
                continue
            seen.add(p.key)
            out.append(p)
            repeats = 0
        return out

    def observe(self, proposal: Proposal, values: list[float], constraint: float | None) -> None:
        pass


class _StreamProposer(_Proposer):
    """Proposes the new structures of a stream sampler (:mod:`pipeline.draws`)."""

    def __init__(self, sampler: str, spaces: Mapping[str, SearchSpace], seed: int):
        self.draws = stream(sampler, spaces, seed)
        self.size = space_size(spaces)

    def _draw(self, repeats_before: int) -> Proposal | None:
        draw = next(self.draws, None)
        return None if draw is None else Proposal(draw.params, draw.distributions, repeats_before)


class _ModelProposer(_Proposer):
    """Proposes through one of Optuna's model-based samplers, asking an in-memory study; a
    repeated structure is told the outcome it had (once known)."""

    def __init__(self, settings: Settings, spaces: Mapping[str, SearchSpace]):
        self.settings = settings
        self.spaces = spaces
        self.mirror = optuna.create_study(directions=settings.directions)
        self.asked = 0
        self.outcome: dict[str, tuple[list[float], float | None]] = {}
        self.waiting: dict[str, list] = {}  # repeats told when their structure's outcome comes

    def _tell(self, trial, values: list[float], constraint: float | None) -> None:
        if constraint is not None:
            trial.set_constraint("flops_band", constraint)
        self.mirror.tell(trial, values)

    def _draw(self, repeats_before: int) -> Proposal:
        trial = self.mirror.ask()
        self.asked += 1
        params = sample_structure(trial, self.spaces)
        return Proposal(params, trial.distributions, repeats_before, trial)

    def _repeated(self, proposal: Proposal) -> None:
        if proposal.key in self.outcome:
            self._tell(proposal.trial, *self.outcome[proposal.key])
        else:  # a repeat of a structure of this batch: told with it
            self.waiting.setdefault(proposal.key, []).append(proposal.trial)

    def propose(self, n: int, seen: set[str]) -> list[Proposal]:
        s = self.settings
        self.mirror.sampler = _sampler(s.sampler, _step_seed(s.seed, self.asked))
        return super().propose(n, seen)

    def observe(self, proposal: Proposal, values: list[float], constraint: float | None) -> None:
        self.outcome[proposal.key] = (values, constraint)
        for trial in (proposal.trial, *self.waiting.pop(proposal.key, ())):
            self._tell(trial, values, constraint)


class Search:
    """One run's search over its persistent study (see the module's docstring)."""

    def __init__(self, settings: Settings, run_dir: Path, workers: int = 1):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.settings = settings
        self.run_dir = run_dir
        self.workers = workers
        self.spaces = {name: get_space(name) for name in settings.spaces}
        self.url = settings.study_url(run_dir)
        self.study = open_study(
            self.url,
            settings.study_name,
            where=settings.study_where(run_dir),
            fix=settings.study_fix,
        )
        trials = self.study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
        own = [t for t in trials if t.user_attrs["result"].get("run", "") == settings.run_tag]
        # a resumed run: its candidates already recorded, by structure
        self.stored = {structure_key(t.params): t.user_attrs["result"] for t in own}
        # a run that joined a shared study: what the other runs had found when it started
        self.others = {t.user_attrs["result"]["arch_id"] for t in trials} - {
            r["arch_id"] for r in self.stored.values()
        }
        self.candidates: list[dict[str, Any]] = []  # the results, in trial order
        self.params: dict[int, dict[str, Any]] = {}  # trial number -> parameters
        self.by_arch: dict[str, dict[str, Any]] = {}  # arch id -> its candidate's result
        self.counts = Counts()
        self.seconds = 0.0  # of the last run()

    @property
    def finished(self) -> int:
        return len(self.candidates)

    def _values(self, result: dict[str, Any]) -> list[float]:
        key = [math.inf if v is None else v for v in result["key"]]
        return [_objective(key), result["storage_mbit"]][: len(self.settings.directions)]

    def _take(self, p: Proposal, result: dict[str, Any], proposer, new: list) -> None:
        """Count one evaluated proposal, and record it when it is a new candidate."""
        c = self.counts
        c.drawn += p.repeats_before + 1
        c.repeats += p.repeats_before
        if not result["feasible"]:
            c.outside += 1
            low, high = self.settings.band
            constraint = max(result["flops"] - high, low - result["flops"]) / high
            proposer.observe(p, [PENALTY] * len(self.settings.directions), constraint)
            return
        first = self.by_arch.get(result["arch_id"])
        if first is not None or (result["arch_id"] in self.others and p.key not in self.stored):
            c.same_arch += 1
            proposer.observe(p, self._values(first or result), None)
            return
        number = len(self.candidates)
        result = {**result, "trial": number}
        if self.settings.run_tag:
            result["run"] = self.settings.run_tag
        values = self._values(result)
        proposer.observe(p, values, None)
        c.candidates += 1
        self.candidates.append(result)
        self.params[number] = p.params
        self.by_arch[result["arch_id"]] = result
        if p.key not in self.stored:
            now = datetime.now()
            new.append(
                FrozenTrial(
                    number=number,
                    state=TrialState.COMPLETE,
                    value=None,
                    values=values,
                    datetime_start=now,
                    datetime_complete=now,
                    params=p.params,
                    distributions=dict(p.distributions),
                    user_attrs={"result": result},
                    system_attrs={},
                    intermediate_values={},
                    trial_id=-1,
                )
            )

    def run(self, progress: bool = True, seconds: float | None = None) -> None:
        """Search until the run has its candidates (or, given ``seconds``, until that much time
        has passed: the sampler comparison of ``python -m nas.benchmarks samplers``)."""
        s = self.settings
        if s.sampler in STREAM_SAMPLERS:
            proposer = _StreamProposer(s.sampler, self.spaces, s.seed)
            batch, depth = STREAM_BATCH, 2 * self.workers
        else:
            proposer = _ModelProposer(s, self.spaces)
            batch, depth = MODEL_BATCH, 1  # the sampler learns from each batch before the next
        bar = tqdm(
            total=s.trials,
            disable=not progress,
            unit="cand",
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5,
        )
        seen: set[str] = set()
        best = None
        start = time.perf_counter()
        writer = StudyWriter(self.url, s.study_name)
        pool = EvaluatorPool(s, self.workers)
        in_flight: deque = deque()
        try:
            while self.finished < s.trials:
                if seconds is not None and time.perf_counter() - start > seconds:
                    break
                while len(in_flight) < depth:
                    proposals = proposer.propose(batch, seen)
                    if not proposals:
                        break
                    todo = [p.params for p in proposals if p.key not in self.stored]
                    in_flight.append((proposals, pool.submit(todo) if todo else None))
                if not in_flight:
                    break  # the sampler has no new structure left
                proposals, future = in_flight.popleft()
                results = iter(pool.result(future) if future else ())
                new: list[FrozenTrial] = []
                before = self.finished
                for p in proposals:
                    if self.finished == s.trials:
                        break
                    stored = self.stored.get(p.key)
                    self._take(p, stored if stored is not None else next(results), proposer, new)
                writer.put(new)
                bar.update(self.finished - bar.n)
                if self.finished > before:
                    top = min(self.candidates[before:], key=sort_key)
                    if best is None or sort_key(top) < sort_key(best):
                        best = top
                    rate = self.counts.drawn / (time.perf_counter() - start)
                    bar.set_postfix_str(
                        f"best N=({_format_key(best['key'])}) M  "
                        f"{self.counts.drawn} drawn, {rate:.0f}/s"
                    )
        finally:
            pool.close()
            bar.close()
        writer.close()
        self.seconds = time.perf_counter() - start

    def gathered(self) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        """The candidates of the run and their parameters by trial number; for a run that
        joined a shared study, those of every run in the study, each architecture once (its
        first trial), numbered as the study numbers them."""
        if not self.settings.run_tag:
            return self.candidates, self.params
        found: dict[str, dict[str, Any]] = {}
        params: dict[int, dict[str, Any]] = {}
        for t in self.study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]):
            result = {**t.user_attrs["result"], "trial": t.number}
            if result["arch_id"] not in found:
                found[result["arch_id"]] = result
                params[t.number] = t.params
        return list(found.values()), params

    def counts_dict(self) -> dict[str, Any]:
        return {**asdict(self.counts), "space_size": space_size(self.spaces)}


def _format_key(key) -> str:
    if key is None:
        return "-"
    return ", ".join("-" if v is None else f"{v / 1e6:.3g}" for v in key)
