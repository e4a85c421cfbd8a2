"""ArchSpec: JSON round trip, validation errors that name the field, and the stable id."""

import json
import random

import pytest

from nas import ArchSpec, SpecError, arch_id, list_models, model_spec, same_network
from nas.core.blocks import chain_block, fractal_convs
from nas.core.spec import Block, Stage


@pytest.mark.parametrize("name", list_models())
def test_json_round_trip(name):
    spec = model_spec(name)
    text = spec.to_json()
    again = ArchSpec.from_json(text)
    assert again == spec
    assert json.loads(again.to_json()) == json.loads(text)
    assert arch_id(again) == arch_id(spec)


def _bireal_dict() -> dict:
    return model_spec("bireal_resnet18", input_size=32, classes=10).to_dict()


@pytest.mark.parametrize(
    "edit, where, problem",
    [
        (
            lambda d: d["stages"][1]["blocks"][0].update(width=0),
            "stages[1].blocks[0].width",
            "positive",
        ),
        (
            lambda d: d["stages"][0]["blocks"][1].update(convs=[[0, 1], [2, 1]]),
            "stages[0].blocks[1].convs[1]",
            "forward",
        ),
        (
            lambda d: d["stages"][0]["blocks"][0].update(join="max"),
            "stages[0].blocks[0].join",
            "add, mean",
        ),
        (
            lambda d: d["stages"][2]["blocks"][1].update(widht=3),
            "stages[2].blocks[1].widht",
            "unknown field",
        ),
        (
            lambda d: d["stages"][0]["blocks"][0].pop("convs"),
            "stages[0].blocks[0].convs",
            "missing",
        ),
        (lambda d: d.update(classes="ten"), "classes", "integer"),
        (lambda d: d["stem"].update(kind="cifar"), "stem.kind", "imagenet, small"),
        (
            lambda d: d["stages"][0]["blocks"][0].update(convs=[[0, 1]], shortcuts=[[1, 2]]),
            "stages[0].blocks[0]",
            "node 2 has no incoming conv edge",
        ),
        (
            lambda d: d["stages"][0]["blocks"][0].update(convs=[[0, 1], [0, 2]], shortcuts=[]),
            "stages[0].blocks[0]",
            "node 1 has no outgoing edge",
        ),
        (lambda d: d["stages"][3].update(blocks=[]), "stages[3].blocks", "at least one block"),
        (
            lambda d: d["stages"][0]["blocks"][0].update(convs=[[0, 1], [1, 2], [0, 1]]),
            "stages[0].blocks[0].convs",
            "same edge twice",
        ),
    ],
)
def test_validation_names_the_field(edit, where, problem):
    data = _bireal_dict()
    edit(data)
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    assert err.value.where == where
    assert problem in err.value.problem
    assert "\n" not in str(err.value)


def test_invalid_json_text():
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json('{"name": "x",')


def test_dense_unit_cannot_have_shortcut_from_its_input():
    data = model_spec("binary_densenet28", input_size=32, classes=10).to_dict()
    data["stages"][0]["blocks"][0]["shortcuts"] = [[0, 1]]
    with pytest.raises(SpecError, match=r"stages\[0\]\.blocks\[0\]\.shortcuts"):
        ArchSpec.from_dict(data)


def test_two_encodings_of_one_network_share_the_id():
    """Bi-Real ResNet18 as pairs of convs (2 blocks of M = 2 per stage) and as single-conv blocks
    (4 blocks of M = 1) is one network; names and edge order do not matter either."""
    pairs = model_spec("bireal_resnet18")
    singles = pairs.replace(
        name="bireal_as_singles",
        stages=tuple(
            Stage(
                blocks=tuple(
                    chain_block(64 * 2**s, 1, "bireal", stride=2 if s and b == 0 else 1)
                    for b in range(4)
                )
            )
            for s in range(4)
        ),
    )
    assert singles != pairs
    assert arch_id(singles) == arch_id(pairs)
    assert same_network(singles, pairs)

    igp = model_spec("igp_resnet37")
    rng = random.Random(0)
    stages = []
    for stage in igp.stages:
        block = stage.blocks[0]
        convs = list(block.convs)
        rng.shuffle(convs)
        stages.append(
            Stage(
                blocks=(Block(**{**block.__dict__, "convs": tuple(convs)}),),
                transition=stage.transition,
            )
        )
    shuffled = igp.replace(name="other", stages=tuple(stages))
    assert arch_id(shuffled) == arch_id(igp)


def test_different_networks_have_different_ids():
    ids = {arch_id(model_spec(n)) for n in list_models()}
    assert len(ids) == len(list_models())  # igp_resnet37 and 41 differ in width only: still two
    base = model_spec("bireal_resnet18")
    # training options are not the architecture
    assert arch_id(base.replace(activation="ste", padding="one")) == arch_id(base)
    assert arch_id(model_spec("bireal_resnet18", classes=10)) != arch_id(base)
    assert not same_network(model_spec("bireal_resnet18"), model_spec("binary_resnet18"))


def test_fractal_convs_follow_the_expansion_rule():
    """f_1 = conv, f_{C+1}(x) = join(f_C(f_C(x)), conv(x)): count 2^C - 1 convs, longest path
    2^(C-1); built recursively here as an independent check."""

    def expand(c: int, start: int) -> tuple[set, int]:
        if c == 1:
            return {(start, start + 1)}, start + 1
        first, mid = expand(c - 1, start)
        second, end = expand(c - 1, mid)
        return first | second | {(start, end)}, end

    for c in range(1, 6):
        edges, end = expand(c, 0)
        assert set(fractal_convs(c)) == edges
        assert len(edges) == 2**c - 1 and end == 2 ** (c - 1)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    data = _bireal_dict()
    data["stages"][0]["blocks"][0]["stride"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as err:
        ArchSpec.load(path)
    assert str(err.value).startswith(f"{path}: stages[0].blocks[0].stride: must be 1 or 2")


def test_a_key_given_twice_is_refused_naming_it():
    """JSON allows a repeated key and Python keeps the last: a spec refuses it instead."""
    text = model_spec("bireal_resnet18").to_json()
    assert ArchSpec.from_json(text).name == "bireal_resnet18"
    twice = text.replace('"name"', '"name": "first", "name"', 1)
    with pytest.raises(SpecError, match="'name' appears twice"):
        ArchSpec.from_json(twice)
