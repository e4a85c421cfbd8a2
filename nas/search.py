"""``python -m nas.search --budget 0.16GFLOPs``: find the binary CNNs with the best gradient paths
at equal FLOPs.

Each trial samples a structure from a search space, solves its width to the budget (only
candidates with FLOPs in [budget * (1 - tolerance), budget] exist; a structure that cannot get
there is recorded as infeasible with ``trial.set_constraint``), and scores it by its gradient paths
without training (:mod:`nas.metrics`). An architecture already seen (same arch id) is never scored
twice: its trial reuses the first score.

Reproducible and resumable: the sampler is reseeded from (seed, number of finished trials) before
each trial, and a trial reaches the study database in one transaction once it is finished. A run
killed at any point resumes with ``--resume RUN_DIR`` and ends with exactly the requested trials
and the same results as an uninterrupted run. The sampler works on an in-memory mirror of the
study (fast), and every finished trial is added to the persistent study (SQLite in the run
directory, or ``--storage URL``), which Optuna's own tools read.

A run directory protects itself: one process at a time works on it (an exclusive lock held for
the whole run, training and report included), ``--out`` never writes into a directory that holds
something else, ``--resume`` refuses flags that contradict the run's settings (``--trials`` may
grow, to extend a run), and the study is found relative to the directory, so a moved or copied
run resumes into its own database.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas import _cli
from nas._names import printable
from nas._storage import StudyError, StudyWriter, open_study
from nas.budget import format_flops, parse_budget

PENALTY = 1e18  # objective of an infeasible trial (its constraint marks it infeasible too)
SAMPLERS = ("tpe", "random", "nsga2")


@dataclass(frozen=True)
class Settings:
    """What a run was asked to do (``settings.json``)."""

    budget: float
    budget_text: str
    space: str
    trials: int
    seed: int
    tolerance: float
    top: int
    train_top: int
    sampler: str
    storage: str  # an Optuna storage URL given by --storage; "" for study.db in the run directory
    study_name: str
    input_size: int
    classes: int
    scorer: str = "stage_mean_n"
    training: dict[str, Any] | None = None  # runners.tune.TrainingOptions, when train_top > 0
    kind: str = "nas.search"

    @property
    def spaces(self) -> list[str]:
        from search_spaces import list_spaces

        return list_spaces() if self.space == "all" else [self.space]

    @property
    def band(self) -> tuple[float, float]:
        return self.budget * (1 - self.tolerance), self.budget

    @property
    def directions(self) -> list[str]:
        return ["minimize", "minimize"] if self.sampler == "nsga2" else ["minimize"]

    def study_url(self, run_dir: Path) -> str:
        from results.run import study_url

        return study_url(self.storage, run_dir)

    @property
    def has_secret(self) -> bool:
        """Whether the --storage URL holds a password (settings.json is then private)."""
        from sqlalchemy.engine import make_url

        try:
            return bool(self.storage) and make_url(self.storage).password is not None
        except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: keep it private
            return bool(self.storage)

    @property
    def study_fix(self) -> str:
        """What to do when the study's database cannot be opened."""
        if not self.storage:
            return "restore it from a copy, or start a new run"
        return (
            "check --storage: an SQLAlchemy URL (postgresql://user:password@host/db) of a "
            "reachable database whose driver is installed"
        )

    def study_where(self, run_dir: Path) -> str:
        """The study's database as messages name it (never a password of a --storage URL)."""
        from results.run import STUDY_DB

        if not self.storage:
            return str(run_dir / STUDY_DB)
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.storage).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: name the scheme alone
            return self.storage.split(":", 1)[0] + " storage"


def _sampler(name: str, seed: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def _step_seed(seed: int, finished: int) -> int:
    return (seed * 1_000_003 + finished) % 2**32


def _objective(key: Sequence[float]) -> float:
    """A scalar for the sampler to minimise: the key's first value dominates, then the second,
    then the third. Ranking uses the exact lexicographic key; this only guides the sampler."""
    k = [v if math.isfinite(v) else PENALTY for v in key]
    return min(PENALTY, k[0] * 1e3 + k[1] + k[2] * 1e-3)


def score(ops, scorer_name: str = "stage_mean_n", aid: str | None = None) -> dict[str, Any]:
    """Cost and gradient-path metrics of a lowered spec: one candidate's row (without its rank)."""
    from nas.analysis import analyze_ops
    from nas.cost import ops_cost
    from nas.graph import ops_arch_id, ops_depth
    from nas.scorers import get_scorer

    report = analyze_ops(ops)
    key = get_scorer(scorer_name)(report)
    total = ops_cost(ops).total
    stages = list(report.stages.values())

    def mean(field: str, k: int) -> float | None:
        values = [getattr(s, field)[k] for s in stages]
        return None if not values or None in values else sum(values) / len(values)

    return {
        "arch_id": aid or ops_arch_id(ops),
        "flops": total.flops,
        "bops": total.bops,
        "fp_macs": total.fp_macs,
        "storage_mbit": total.storage_mbit,
        "params": total.params,
        "binary_params": total.binary_params,
        "fp_params": total.fp_params,
        "depth": ops_depth(ops),
        **{f"N_{o}": mean("N", k) for k, o in enumerate(("1st", "2nd", "3rd"))},
        **{f"L_{o}": mean("L", k) for k, o in enumerate(("1st", "2nd", "3rd"))},
        "key": [v if math.isfinite(v) else None for v in key],
    }


class Evaluator:
    """Fits a structure to the budget and scores it: the work of one trial after its parameters
    are sampled. Runs in a worker process beside the sampler; keeps the first result of every
    architecture, so none is scored twice."""

    def __init__(self, settings: Settings, known: Sequence[dict[str, Any]] = ()):
        from search_spaces import get_space

        self.settings = settings
        self.spaces = {name: get_space(name) for name in settings.spaces}
        self.by_arch = {r["arch_id"]: r for r in reversed(known) if r.get("feasible")}

    def evaluate(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        from nas.graph import lower, ops_arch_id

        s = self.settings
        structure = dict(params)
        name = structure.pop("space", None) or next(iter(self.spaces))
        solved = self.spaces[name].solve(structure, s.budget, s.tolerance, s.input_size, s.classes)
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
    from nas._storage import die_with_parent

    die_with_parent(parent)
    evaluator = Evaluator(settings, known)
    while (job := conn.recv()) is not None:
        conn.send(evaluator.evaluate(*job))


class _EvaluatorProcess:
    """An :class:`Evaluator` in a worker process, fed one trial at a time."""

    def __init__(self, settings: Settings, known: list[dict[str, Any]]):
        import multiprocessing

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
        import optuna

        from search_spaces import get_space

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

    def _finish(self, pending: _Pending, evaluator: _EvaluatorProcess, writer: StudyWriter):
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

    def _submit(self, trial, evaluator: _EvaluatorProcess) -> _Pending:
        seen = self.by_structure.get(json.dumps(trial.params, sort_keys=True))
        if seen is not None:  # the same parameters again: same architecture, same score
            return _Pending(trial, {**seen, "duplicate_of": seen["trial"]})
        evaluator.submit(trial.number, trial.params)
        return _Pending(trial)

    def run(self, progress: bool = True) -> None:
        from tqdm import tqdm

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
            key=lambda k: _key({"key": k}),
        )
        arch_ids = {r["arch_id"] for r in self.results if r["feasible"]}
        arch_ids_before = len(arch_ids)
        writer = StudyWriter(self.url, self.settings.study_name)
        evaluator = _EvaluatorProcess(self.settings, self.known)
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
                            best is None or _key(result) < _key({"key": best})
                        ):
                            best = result["key"]
                        if result["feasible"]:
                            arch_ids.add(result["arch_id"])
                        elapsed = time.perf_counter() - start
                        bar.set_postfix_str(
                            f"best N=({_fmt_key(best)}) M  {len(arch_ids)} candidates, "
                            f"{(len(arch_ids) - arch_ids_before) / elapsed:.1f}/s"
                        )
                if trial is None:
                    break
                self.pending = self._submit(trial, evaluator)
        finally:
            evaluator.close()
            bar.close()
        writer.close()

    def candidates(self):
        """The distinct candidates (first trial of each arch id) and the reference models,
        ranked by the key (smaller first), as a DataFrame."""
        import pandas as pd

        s = self.settings
        rows = []
        trials = self.mirror.get_trials(deepcopy=False)
        for result in self.by_arch.values():
            trial = trials[result["trial"]]
            rows.append(
                {
                    **result,
                    "reference": "",
                    "in_band": True,
                    "structure": json.dumps(trial.params, sort_keys=True),
                }
            )
        low, high = s.band
        from nas.graph import lower

        for name, space in self.spaces.items():
            for ref, (structure, width) in space.references().items():
                spec = space.build(structure, width, s.input_size, s.classes)
                row = {
                    "space": name,
                    "feasible": True,
                    "width": width,
                    "trial": None,
                    **score(lower(spec), s.scorer),
                    "reference": ref,
                    "structure": json.dumps(structure, sort_keys=True),
                }
                row["in_band"] = low <= row["flops"] <= high
                rows.append(row)
        table = pd.DataFrame(rows)
        order = sorted(
            range(len(rows)),
            key=lambda i: (
                _key(rows[i]),
                rows[i]["storage_mbit"],
                rows[i]["arch_id"],
                rows[i]["reference"],
            ),
        )
        table = table.iloc[order].reset_index(drop=True)
        table.insert(0, "rank", range(1, len(table) + 1))
        table["key"] = table["key"].map(json.dumps)
        columns = [
            "rank",
            "arch_id",
            "space",
            "reference",
            "in_band",
            "flops",
            "bops",
            "fp_macs",
            "storage_mbit",
            "params",
            "binary_params",
            "fp_params",
            "width",
            "depth",
            "N_1st",
            "N_2nd",
            "N_3rd",
            "L_1st",
            "L_2nd",
            "L_3rd",
            "key",
            "trial",
            "structure",
        ]
        table["trial"] = table["trial"].astype("Int64")
        return table[columns]

    def spec_of(self, row) -> Any:
        space = self.spaces[row["space"]]
        structure = json.loads(row["structure"])
        structure.pop("space", None)
        return space.build(
            structure, int(row["width"]), self.settings.input_size, self.settings.classes
        )


def _key(row: dict[str, Any]) -> tuple[float, ...]:
    return tuple(math.inf if v is None else v for v in row["key"])


def _fmt_key(key) -> str:
    if key is None:
        return "-"
    return ", ".join("-" if v is None else f"{v / 1e6:.3g}" for v in key)


def write_results(search: Search, run_dir: Path) -> Any:
    """candidates.csv (+ parquet), the top-k specs and the report, atomically."""
    from nas.atomic import atomic_write_bytes, atomic_write_text
    from results.report import build_report
    from results.run import CANDIDATES

    table = search.candidates()
    atomic_write_text(run_dir / CANDIDATES, table.to_csv(index=False))
    try:
        import io

        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        atomic_write_bytes(run_dir / "candidates.parquet", buffer.getvalue())
    except ImportError:
        pass  # pyarrow is optional
    specs = run_dir / "specs"
    specs.mkdir(exist_ok=True)
    top = table[table["reference"] == ""].head(search.settings.top)
    for _, row in top.iterrows():
        spec = search.spec_of(row).replace(name=f"rank{row['rank']:03d}-{row['arch_id']}")
        atomic_write_text(specs / f"{spec.name}.json", spec.to_json() + "\n")
    for _, row in table[table["reference"] != ""].iterrows():  # the reference models too
        spec = search.spec_of(row).replace(name=f"ref-{row['reference']}-{row['arch_id']}")
        atomic_write_text(specs / f"{spec.name}.json", spec.to_json() + "\n")
    build_report(run_dir)
    return table


def _new_run_dir(args, budget: float) -> Path:
    if args.out:
        return Path(args.out)
    from results.run import RUNS_ROOT

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = RUNS_ROOT / f"{stamp}-{format_flops(budget)}-{args.space}-s{args.seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# What --resume lets change: --trials may grow (the run goes on to the new count); the rest is the
# run's and must be left out or given as it was.
RESUME_MAY_CHANGE = ("trials", "no_progress")
_NOT_SETTINGS = ("out", "describe_space")


def given_flags(parser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` of every option written on the command line (abbreviations are off)."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(a == option or a.startswith(option + "=") for a in argv):
                given.add(action.dest)
    return given


def _stored_value(stored: dict[str, Any], dest: str) -> tuple[bool, Any]:
    training = stored.get("training") or {}
    if dest in stored:
        return True, stored[dest]
    if dest in training:
        return True, training[dest]
    return False, None


def _check_resume_flags(args, given: set[str], stored: dict[str, Any]) -> dict[str, Any]:
    """Refuse flags that contradict the run's settings, naming the difference; returns the
    settings to resume with (``--trials`` may grow)."""
    for dest in sorted(given - {"resume", *RESUME_MAY_CHANGE}):
        flag = "--" + dest.replace("_", "-")
        value = getattr(args, dest)
        known, before = _stored_value(stored, dest)
        if dest == "budget":
            try:
                same = parse_budget(value) == stored["budget"]
            except ValueError:
                same = False
            before = stored["budget_text"]
        elif dest == "train_subset":
            same = (value or None) == before
        elif dest == "baseline":
            same = (value if value != "none" else "") == before
        elif dest == "storage":
            same = value == before or (not before and value == stored.get("_url"))
        else:
            same = known and value == before
        if not known:
            raise _cli.UsageError(
                f"{flag} cannot be given with --resume: the run keeps its own settings "
                f"(only {', '.join('--' + d.replace('_', '-') for d in RESUME_MAY_CHANGE)} "
                "may change)"
            )
        if not same:
            raise _cli.UsageError(
                f"--resume keeps the run's settings: {flag} {value} differs from the run's "
                f"{before if before not in (None, '') else 'default'} (only --trials may change, "
                "to extend the run; start a new run for other settings)"
            )
    if "trials" in given and args.trials != stored["trials"]:
        if args.trials < stored["trials"]:
            raise _cli.UsageError(
                f"--trials {args.trials} is fewer than the run's {stored['trials']}: a run can "
                "be extended, not shortened"
            )
        print(
            f"extending the run from {stored['trials']} to {args.trials} trials",
            file=sys.stderr,
        )
        return {**stored, "trials": args.trials}
    return stored


def _resume(args, given: set[str]) -> tuple[Settings, Path, int]:
    from nas.atomic import atomic_write_json
    from results.run import (
        SETTINGS,
        STUDY_DB,
        RunInUse,
        is_run_dir,
        lock_run_dir,
        read_settings,
    )

    run_dir = Path(args.resume)
    if not is_run_dir(run_dir):
        raise _cli.UsageError(
            f"{run_dir} is not a search run directory (no {SETTINGS} written by nas.search)"
        )
    try:
        lock = lock_run_dir(run_dir)
    except RunInUse as e:
        raise _cli.UsageError(str(e)) from None
    except OSError as e:
        raise _cli.UsageError(f"cannot lock the run directory {run_dir}: {e.strerror}") from None
    try:
        stored = read_settings(run_dir)
        fields = {f for f in Settings.__dataclass_fields__}
        settings = Settings(**{k: v for k, v in stored.items() if k in fields})
    except (OSError, ValueError, TypeError, RecursionError) as e:
        raise _cli.UsageError(
            f"{run_dir / SETTINGS} cannot be read ({type(e).__name__}); restore it from a copy"
        ) from None
    database = run_dir / STUDY_DB
    if not settings.storage and not (database.is_file() and database.stat().st_size):
        what = "is empty" if database.is_file() else "is missing"
        raise _cli.UsageError(
            f"{database} {what}: the study of this run is not in it; restore it from a copy, "
            "or start a new run"
        )
    stored = {**asdict(settings), "_url": settings.study_url(run_dir)}
    updated = _check_resume_flags(args, given, stored)
    updated.pop("_url")
    if updated["trials"] != settings.trials:
        settings = Settings(**updated)
        atomic_write_json(run_dir / SETTINGS, asdict(settings), private=settings.has_secret)
    return settings, run_dir, lock


# The numeric flags: (flag, lowest, highest), a bound in a list excluded. Checked when the command
# line is read, whether or not the run trains, before any work.
_RANGES = (
    ("--tolerance", [0], [1]),
    ("--trials", 1, math.inf),
    ("--top", 1, math.inf),
    ("--input-size", 8, 8192),
    ("--classes", 2, 1_000_000),
    ("--train-top", 0, math.inf),
    ("--epochs", 1, math.inf),
    ("--train-subset", 0, math.inf),
    ("--width-mult", [0], 4),
    ("--cpus-per-trial", [0], math.inf),
    ("--gpus-per-trial", 0, math.inf),
    ("--max-failures", 0, math.inf),
)


def check_numbers(args) -> None:
    """Every numeric flag finite and in its range, or one line naming it."""
    for flag, low, high in _RANGES:
        value = getattr(args, flag[2:].replace("-", "_"))
        lo, hi = (b[0] if isinstance(b, list) else b for b in (low, high))
        above = value > lo if isinstance(low, list) else value >= lo
        below = value < hi if isinstance(high, list) else value <= hi
        if not (math.isfinite(value) and above and below):
            if hi == math.inf:
                bounds = f"above {lo}" if isinstance(low, list) else f"at least {lo}"
            else:
                bounds = "in " + ("(" if isinstance(low, list) else "[") + f"{lo}, {hi}"
                bounds += ")" if isinstance(high, list) else "]"
            raise _cli.UsageError(f"{flag} must be {bounds}, got {value}")


def _prepare(args) -> tuple[Settings, Path, int]:
    """A new run: checks every flag, then claims the run directory (its lock), creates the study
    and writes settings.json, in that order (a run directory always has its study)."""
    from nas.atomic import atomic_write_json
    from results.run import (
        LOCK,
        SETTINGS,
        STUDY_DB,
        RunInUse,
        is_run_dir,
        lock_run_dir,
    )
    from search_spaces import get_space, list_spaces

    if args.budget is None:
        raise _cli.UsageError("give a compute budget, e.g. --budget 0.16GFLOPs")
    try:
        budget = parse_budget(args.budget)
    except ValueError as e:
        raise _cli.UsageError(str(e)) from None
    if args.space != "all" and args.space not in list_spaces():
        raise _cli.UsageError(
            f"unknown search space {args.space!r}; choose {', '.join(list_spaces())} or all"
        )
    training = None
    if args.train_top:
        training = _training_options(args)
    spaces = list_spaces() if args.space == "all" else [args.space]
    ranges = [get_space(n).flops_range(args.input_size, args.classes) for n in spaces]
    smallest, largest = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if budget < smallest:
        raise _cli.UsageError(
            f"the budget {format_flops(budget)} is below every candidate: the smallest feasible "
            f"is {format_flops(smallest)} ({smallest:.4g} FLOPs) in space {args.space!r}"
        )
    if budget * (1 - args.tolerance) > largest:
        raise _cli.UsageError(
            f"the budget {format_flops(budget)} is above every candidate: the largest is "
            f"{format_flops(largest)} in space {args.space!r}"
        )
    run_dir = _new_run_dir(args, budget)
    if is_run_dir(run_dir):
        raise _cli.UsageError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose --out"
        )
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise _cli.UsageError(
            f"--out {run_dir} is a directory that holds other files; give a new or empty directory"
        )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_run_dir(run_dir)
    except RunInUse as e:
        raise _cli.UsageError(str(e)) from None
    except OSError as e:
        raise _cli.UsageError(
            f"cannot write the output directory {run_dir}: {e.strerror}"
        ) from None
    if is_run_dir(run_dir):  # another process made it a run between our check and the lock
        raise _cli.UsageError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose --out"
        )
    settings = Settings(
        budget=budget,
        budget_text=args.budget,
        space=args.space,
        trials=args.trials,
        seed=args.seed,
        tolerance=args.tolerance,
        top=args.top,
        train_top=args.train_top,
        sampler=args.sampler,
        storage=args.storage or "",
        study_name=run_dir.resolve().name,
        input_size=args.input_size,
        classes=args.classes,
        training=training,
    )
    try:
        open_study(
            settings.study_url(run_dir),
            settings.study_name,
            settings.directions,
            where=settings.study_where(run_dir),
            fix=settings.study_fix,
        )
    except StudyError:  # leave the directory as it was found
        for name in (STUDY_DB, f"{STUDY_DB}-wal", f"{STUDY_DB}-shm", LOCK):
            if not settings.storage or name == LOCK:
                (run_dir / name).unlink(missing_ok=True)
        if created:
            run_dir.rmdir()
        raise
    atomic_write_json(run_dir / SETTINGS, asdict(settings), private=settings.has_secret)
    return settings, run_dir, lock


def _training_options(args) -> dict[str, Any]:
    """The training flags, checked before the search starts (the data must be there)."""
    from runners.datasets import DATASETS, DataError, DataNotFound, load_dataset
    from runners.tune import TrainingOptions
    from search_spaces import get_space, list_spaces

    if args.dataset not in DATASETS:
        raise _cli.UsageError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    try:
        load_dataset(args.dataset, args.data_dir)
    except (DataNotFound, DataError) as e:
        raise _cli.UsageError(str(e)) from None
    spaces = list_spaces() if args.space == "all" else [args.space]
    references = sorted(
        {r for n in spaces if n in list_spaces() for r in get_space(n).references()}
    )
    baseline = args.baseline
    if baseline not in (*references, "none"):
        if baseline != "bireal_resnet18":  # the default is skipped where the space lacks it
            raise _cli.UsageError(
                f"--baseline {baseline!r} is not a reference model of the searched space; "
                f"choose one of {', '.join(references)} or none"
            )
        baseline = "none"
    options = TrainingOptions(
        top=args.train_top,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        width_mult=args.width_mult,
        stem_stride=args.stem_stride,
        augment=args.augment,
        train_subset=args.train_subset or None,
        seed=args.seed,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        ray_address=args.ray_address,
        dashboard_port=args.dashboard_port,
        baseline="" if baseline == "none" else baseline,
    )
    return asdict(options)


def train_top(settings: Settings, run_dir: Path, table) -> int:
    """Train the top candidates through Ray Tune and join their results to candidates.csv; returns
    the exit status: 1 when every trained candidate failed (the last line says why)."""
    from nas.atomic import atomic_write_text
    from results.report import build_report
    from results.run import CANDIDATES
    from runners.tune import TrainingOptions, run_training

    options = TrainingOptions(**settings.training)
    top = table[table["reference"] == ""].head(options.top)
    specs = {p.stem.rsplit("-", 1)[1]: p for p in (run_dir / "specs").glob("*.json")}
    candidates = [(aid, specs[aid]) for aid in top["arch_id"]]
    baseline = table[(table["reference"] == options.baseline) & (table["reference"] != "")]
    if len(baseline):
        candidates.append((baseline["arch_id"].iloc[0], specs[baseline["arch_id"].iloc[0]]))
    print(
        f"training the top {len(top)}"
        + (f" and {options.baseline} (the baseline)" if len(baseline) else "")
        + f" on {options.dataset} "
        f"({options.epochs} epochs, width x{options.width_mult}, stem stride "
        f"{options.stem_stride}, {'with' if options.augment else 'no'} augmentation, "
        f"{options.train_subset or 'all'} training images per epoch)",
        file=sys.stderr,
    )
    trained = run_training(run_dir, candidates, options)
    joined = table.drop(columns=[c for c in table.columns if c.startswith("trained_")])
    extra = trained.rename(columns={c: f"trained_{c}" for c in trained.columns if c != "arch_id"})
    joined = joined.merge(extra, on="arch_id", how="left")
    atomic_write_text(run_dir / CANDIDATES, joined.to_csv(index=False))
    build_report(run_dir)
    for row in trained.itertuples():
        if row.status == "failed":
            result = f"failed: {printable(str(row.error))}"
        else:
            early = " (stopped early by ASHA)" if row.status == "stopped" else ""
            result = f"test top-1 {row.top1:.4f} after {row.epoch:g} epochs{early}"
        print(f"  {row.arch_id}: {result}")
    ours = trained[trained["arch_id"].isin(set(top["arch_id"]))]
    if len(ours) and (ours["status"] == "failed").all():
        print(
            f"nas.search: error: every trained candidate failed ({len(ours)} of {len(ours)}; the "
            f"first: {printable(str(ours['error'].iloc[0]))}); the ranking is in "
            f"{run_dir / 'report.md'}; fix the cause and continue with --resume {run_dir}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(
        prog="python -m nas.search",
        description="Search binary CNNs with the best gradient paths under a FLOPs budget.",
    )
    parser.add_argument("--budget", help="FLOPs budget: 0.16GFLOPs, 160MFLOPs, 1.6e8")
    parser.add_argument("--space", default="all", help="resnet, densenet or all (default)")
    parser.add_argument("--trials", type=int, default=1000, help="Optuna trials (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="candidates have FLOPs in [budget * (1 - T), budget] (default 0.05)",
    )
    parser.add_argument("--top", type=int, default=10, help="specs written for the top K")
    parser.add_argument(
        "--train-top",
        type=int,
        default=3,
        help="train the top K through Ray Tune (default 3; 0: stop after ranking)",
    )
    parser.add_argument(
        "--dataset",
        default="fashion_mnist",
        help="training data (default fashion_mnist; mnist, digits, cifar10, cifar100, imagefolder)",
    )
    parser.add_argument("--data-dir", help="where the dataset's files are")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--width-mult",
        type=float,
        default=0.5,
        help="proxy: every width times this (default 0.5; 1 for the searched widths)",
    )
    parser.add_argument(
        "--stem-stride",
        type=int,
        choices=(1, 2),
        default=2,
        help="proxy: stride of the small-image stem (default 2: half resolution, 1/4 the MACs)",
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        default=40000,
        help="proxy: training images per epoch (default 40000; 0 for the whole train split)",
    )
    parser.add_argument(
        "--augment",
        action="store_true",
        help="random crops and flips in training (off by default: the short proxy learns more "
        "without them; turn on for long runs)",
    )
    parser.add_argument(
        "--baseline",
        default="bireal_resnet18",
        help="a reference model trained beside the candidates (default bireal_resnet18; none)",
    )
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="retries of a crashed trial, from its last checkpoint",
    )
    parser.add_argument("--ray-address", help="join this Ray cluster instead of a local one")
    parser.add_argument("--dashboard-port", type=_cli.port, default=8265)
    parser.add_argument("--out", help="run directory (default results/runs/<run-id>)")
    parser.add_argument("--storage", help="Optuna storage URL (default SQLite in the run dir)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--describe-space", metavar="NAME", help="print a space's parameters")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    check_numbers(args)
    if args.describe_space:
        from search_spaces import get_space

        try:
            print(get_space(args.describe_space).describe())
        except KeyError as e:
            raise _cli.UsageError(e.args[0]) from None
        return 0
    try:
        if args.resume:
            settings, run_dir, _lock = _resume(args, given_flags(parser, argv))
        else:
            settings, run_dir, _lock = _prepare(args)
        search = Search(settings, run_dir)
    except StudyError as e:
        raise _cli.UsageError(str(e)) from None
    print(f"run directory: {printable(str(run_dir))}", file=sys.stderr)
    started = time.perf_counter()
    search.run(progress=not args.no_progress)
    table = write_results(search, run_dir)
    seconds = time.perf_counter() - started
    _summary(settings, run_dir, table, seconds)
    if settings.train_top:
        return train_top(settings, run_dir, table)
    return 0


def _summary(settings: Settings, run_dir: Path, table, seconds: float) -> None:
    found = table[table["reference"] == ""]
    print(
        f"{settings.trials} trials, {len(found)} distinct candidates in the band "
        f"[{format_flops(settings.band[0])}, {format_flops(settings.band[1])}], {seconds:.1f} s"
    )
    show = table.head(max(settings.top, 1))[
        [
            "rank",
            "arch_id",
            "space",
            "reference",
            "flops",
            "storage_mbit",
            "N_1st",
            "N_2nd",
            "N_3rd",
        ]
    ].copy()
    show["flops"] = (show["flops"] / 1e9).map("{:.4f}e9".format)
    for c in ("N_1st", "N_2nd", "N_3rd"):
        show[c] = (show[c] / 1e6).map("{:.3f} M".format)
    print(show.to_string(index=False))
    refs = table[table["reference"] != ""][["rank", "reference", "flops", "in_band"]]
    print(
        "references: "
        + ", ".join(
            f"{r.reference} #{r.rank}{'' if r.in_band else ' (outside the band)'}"
            for r in refs.itertuples()
        )
    )
    print(f"results: {run_dir / 'report.md'}  candidates: {run_dir / 'candidates.csv'}")


if __name__ == "__main__":
    sys.exit(_cli.run("nas.search", main))
