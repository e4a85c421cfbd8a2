"""Successive halving for the search's candidates as a Ray Tune scheduler, the baseline exempt:
the decision is :func:`runners.halving.promoted`; this module pauses the candidates at the rung
until it can be made, then stops the losers. The reference model the candidates are compared
with trains every epoch and stays out of the rung.

The halving is synchronous, not Ray's ASHA: ASHA promotes a trial that is in the best third of
those that reached the rung *before* it, so the first arrivals go on whatever they score, and a
late candidate better than them can be stopped (seen in the main job: the second best at the
rung stopped, the fourth best promoted). Here a candidate at the rung is paused (its checkpoint
kept, its CPU given to the next candidate) until the rung is complete.

The decision is derived from the trials' own states and last results, never from memory of the
scheduler's: a restored experiment (its scheduler is a fresh one) reaches the same decision.

Imported only once Ray is (it reads the loopback recipe from the environment when imported:
:mod:`runners.ray_local`), by :func:`runners.tune.tune_candidates`; a module of its own so that
a restored experiment finds the scheduler's class by name."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from runners import halving


def _exempt(trial) -> bool:
    return bool(trial.config["candidate"].get("baseline"))


class PromoteCandidates(FIFOScheduler):
    """Synchronous successive halving at one rung over the candidates; a trial whose
    configuration is marked ``baseline`` trains every epoch and does not count."""

    def __init__(self, max_t: int, rung: int = 1, reduction_factor: int = 3):
        super().__init__()
        self.max_t, self.rung, self.reduction_factor = max_t, rung, reduction_factor
        self._sign = 1.0  # +1: a larger metric is better (the Tuner's mode, set by Tune)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self._sign = -1.0 if mode == "min" else 1.0
        return super().set_search_properties(metric, mode, **spec)

    def _iteration(self, trial, current: dict | None = None) -> int:
        result = current if current is not None else (trial.last_result or {})
        return int(result.get(TRAINING_ITERATION) or 0)

    def decision(self, trials, current=None) -> set | None:
        """The candidates promoted past the rung (:func:`runners.halving.promoted`), or None
        while some candidate has not reached it. ``current``: (trial, result) of a result not
        yet in the trial's ``last_result``."""
        results = {t: t.last_result or {} for t in trials if not _exempt(t)}
        if current is not None:
            results[current[0]] = current[1]
        standings = {
            trial: halving.Standing(
                epochs=self._iteration(trial, result),
                value=result.get(self._metric),
                ended=trial.status in (Trial.ERROR, Trial.TERMINATED),
            )
            for trial, result in results.items()
        }
        return halving.promoted(standings, self.rung, self.reduction_factor, self._sign > 0)

    def _stop_losers(self, tune_controller, promoted: set, but=None) -> None:
        for trial in tune_controller.get_trials():
            waiting = trial.status in (Trial.PAUSED, Trial.PENDING) or trial.is_saving
            if trial is not but and not _exempt(trial) and waiting and trial not in promoted:
                if self._iteration(trial) == self.rung:
                    tune_controller.stop_trial(trial)

    def on_trial_result(self, tune_controller, trial, result):
        if _exempt(trial) or self.rung >= self.max_t or self._iteration(trial, result) != self.rung:
            return TrialScheduler.CONTINUE
        promoted = self.decision(tune_controller.get_trials(), (trial, result))
        if promoted is None:
            return TrialScheduler.PAUSE  # until every candidate is at the rung
        self._stop_losers(tune_controller, promoted, but=trial)
        return TrialScheduler.CONTINUE if trial in promoted else TrialScheduler.STOP

    def choose_trial_to_run(self, tune_controller):
        if self.rung >= self.max_t:  # no halving: first come, first served
            return super().choose_trial_to_run(tune_controller)
        trials = tune_controller.get_trials()
        promoted = self.decision(trials)

        def held(trial) -> bool:  # at the rung, not (yet) promoted
            return (
                not _exempt(trial)
                and self._iteration(trial) == self.rung
                and (promoted is None or trial not in promoted)
            )

        if promoted is not None:
            self._stop_losers(tune_controller, promoted)
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in trials:
                if trial.status == status and not held(trial):
                    return trial
        return None

    def debug_string(self) -> str:
        return (
            f"Synchronous successive halving at epoch {self.rung}: the best 1/"
            f"{self.reduction_factor} of the candidates go on to {self.max_t}."
        )
