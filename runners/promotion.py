"""Successive halving for the search's candidates, the baseline exempt: an ASHA scheduler (short
runs first, the best promoted to the full recipe) that never stops the reference model the
candidates are compared with, and keeps its results out of the rungs.

Imported only once Ray is (it reads the loopback recipe from the environment when imported:
:mod:`runners.ray_local`), by :func:`runners.tune.tune_candidates`; a module of its own so that
a restored experiment finds the scheduler's class by name."""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


def _exempt(trial) -> bool:
    return bool(trial.config["candidate"].get("baseline"))


class PromoteCandidates(ASHAScheduler):
    """ASHA over the candidates; a trial whose configuration is marked ``baseline`` trains every
    epoch and does not count in the rungs."""

    def on_trial_result(self, tune_controller, trial, result):
        if _exempt(trial):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if not _exempt(trial):
            super().on_trial_complete(tune_controller, trial, result)
