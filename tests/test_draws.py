"""Drawing structures (pipeline.draws) and writing trials in bulk (pipeline.storage.add_trials)."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import optuna
import pytest

from pipeline.draws import enumerate_draws, random_draws, sobol_draws, structure_key
from pipeline.storage import add_trials, open_storage
from search_spaces import Param, get_space
from search_spaces.densenet import DenseNetSpace
from search_spaces.resnet import ResNetSpace


class SmallResNets(ResNetSpace):
    """The ResNet space with fewer options per question, small enough to enumerate."""

    def parameters(self) -> list[Param]:
        small = {
            "s<k>_blocks": Param("s<k>_blocks", low=1, high=2),
            "depth": Param("depth", low=1, high=3),
            "columns": Param("columns", low=2, high=3),
        }
        return [small.get(p.name, p) for p in super().parameters()]


class SmallDenseNets(DenseNetSpace):
    def parameters(self) -> list[Param]:
        small = {
            "s<k>_units": Param("s<k>_units", low=1, high=2),
            "r<t>": Param("r<t>", (2.0, 3.0)),
        }
        return [small.get(p.name, p) for p in super().parameters()]


def test_sizes_of_the_spaces_by_hand():
    # ResNets: 2 downsamplings x 2 stems x 2 joins x 6^4 block counts x (chains of depth 1..4 with
    # 2^(M(M+1)/2) edge sets, plus 4 column counts x 3 fractal shortcut sets)
    assert get_space("resnet").size() == 8 * 6**4 * (2 + 8 + 64 + 1024 + 12)
    # DenseNets: 24^4 unit counts x (1 + 2 + 2 unit kinds) x 8^3 reductions x 2 roundings
    assert get_space("densenet").size() == 24**4 * 5 * 8**3 * 2


@pytest.mark.parametrize("space", [SmallResNets(), SmallDenseNets()])
def test_enumeration_visits_every_structure_once(space):
    spaces = {space.name: space}
    keys = [structure_key(d.params) for d in enumerate_draws(spaces)]
    assert len(keys) == len(set(keys)) == space.size()
    # every random draw is one of them
    assert {
        structure_key(d.params) for d in itertools.islice(random_draws(spaces, 0), 3000)
    } <= set(keys)


def test_enumeration_of_two_spaces_is_their_union():
    spaces = {"resnet": SmallResNets(), "densenet": SmallDenseNets()}
    keys = {structure_key(d.params) for d in enumerate_draws(spaces)}
    assert len(keys) == spaces["resnet"].size() + spaces["densenet"].size()
    assert Counter(k.split('"space": ')[1][1:4] for k in keys) == {
        "res": spaces["resnet"].size(),
        "den": spaces["densenet"].size(),
    }


@pytest.mark.parametrize("draws", [random_draws, sobol_draws])
def test_same_seed_same_draws(draws):
    spaces = {"resnet": get_space("resnet"), "densenet": get_space("densenet")}

    def first(seed: int) -> list[str]:
        return [structure_key(d.params) for d in itertools.islice(draws(spaces, seed), 300)]

    assert first(4) == first(4)
    assert first(4) != first(5)


def test_sobol_balances_each_question():
    """A scrambled Sobol sequence puts exactly one of 256 points in each interval of 1/256: the
    first question's two answers come 128 times each (random draws rarely do), and the second's
    (asked of both spaces) likewise in each half."""
    spaces = {"resnet": get_space("resnet"), "densenet": get_space("densenet")}
    draws = list(itertools.islice(sobol_draws(spaces, 7), 256))
    assert Counter(d.params["space"] for d in draws) == {"resnet": 128, "densenet": 128}
    resnets = [d for d in draws if d.params["space"] == "resnet"]
    assert Counter(d.params["downsample"] for d in resnets) == {"in_block": 64, "transition": 64}


def test_bulk_trials_read_back_as_optunas_own(tmp_path):
    """Trials written by add_trials read back exactly as the same trials added by Optuna."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    storage = open_storage(url)
    ours = optuna.create_study(storage=storage, study_name="ours")
    theirs = optuna.create_study(storage=storage, study_name="theirs")
    draws = itertools.islice(random_draws({"resnet": get_space("resnet")}, 1), 40)
    trials = [
        optuna.trial.create_trial(
            params=d.params,
            distributions=d.distributions,
            value=float(i) if i % 7 else math.inf,
            user_attrs={"result": {"arch_id": f"a{i}", "key": [i, None, 2.5]}},
            system_attrs={"constraints": [0.0]} if i % 5 == 0 else {},
        )
        for i, d in enumerate(draws)
    ]
    add_trials(storage, "ours", trials[:25])
    add_trials(storage, "ours", trials[25:])  # numbered after the first batch
    theirs.add_trials(trials)

    def seen(study) -> list:
        return [
            (t.number, t.state, t.params, t.distributions, t.values, t.user_attrs, t.system_attrs)
            for t in optuna.load_study(study_name=study.study_name, storage=url).trials
        ]

    assert seen(ours) == seen(theirs)
    assert [t.number for t in ours.trials] == list(range(40))
