"""The library's shared contracts: one registry helper (models, scorers, spaces), one scheme of
scope names, the families that lay out both the zoo and the spaces, the lazy public API, a
torch-free spec side and no import cycles."""

import subprocess
import sys
from pathlib import Path

import pytest

import nas
from nas import UnknownModelError, get_scorer, list_models, model_spec, same_network, spec_cost
from nas.core import scopes as names
from nas.core.graph import lower
from nas.core.names import Registry, UnknownNameError
from nas.core.scorers import SCORERS
from search_spaces import get_space, list_spaces

ROOT = Path(__file__).parent.parent
SPEC_SIDE = (
    "nas.core.spec",
    "nas.core.graph",
    "nas.core.cost",
    "nas.core.metrics",
    "nas.core.scorers",
    "nas.core.analysis",
    "nas.core.registry",
    "nas.core.zoo",
    "nas.core.families",
    "nas.core.scopes",
    "nas.core.blocks",
    "nas.profile",
    "nas.paths",
    "search_spaces",
)


def test_registry_registers_lists_and_names_the_closest():
    things: Registry[int] = Registry("thing")
    assert things.register(1, "alpha") == 1
    things.register(2, "beta")

    @things.register
    def gamma():
        return 3

    assert things.get("gamma") is gamma and things.names() == ["alpha", "beta", "gamma"]
    assert things.names("?e*") == ["beta"] and list(things) == ["alpha", "beta", "gamma"]
    assert "alpha" in things and len(things) == 3
    with pytest.raises(ValueError, match="thing 'beta' is registered twice"):
        things.register(4, "beta")
    with pytest.raises(KeyError) as e:
        things.get("alpah")
    assert str(e.value) == e.value.args[0] == "unknown thing 'alpah'; did you mean alpha, gamma?"
    with pytest.raises(UnknownNameError, match="known: alpha, beta, gamma"):
        things.get("zzzzzz")
    things.remove("beta")
    assert things.names() == ["alpha", "gamma"]


def test_models_scorers_and_spaces_share_the_registry():
    with pytest.raises(UnknownModelError) as e:
        model_spec("bireal_resnet81")
    assert isinstance(e.value, KeyError) and str(e.value) == e.value.args[0]
    assert str(e.value).startswith("unknown model 'bireal_resnet81'; did you mean bireal_resnet18")
    with pytest.raises(KeyError, match="unknown model 'xyzzy'; python -m nas.profile --list"):
        model_spec("xyzzy")
    with pytest.raises(KeyError, match="unknown scorer 'stage_mean'; did you mean stage_mean_n"):
        get_scorer("stage_mean")
    with pytest.raises(KeyError, match="unknown search space 'qqq'; known: densenet, resnet, all"):
        get_space("qqq")
    assert list_models("bireal*") == ["bireal_resnet18", "bireal_resnet34"]
    assert isinstance(SCORERS, Registry) and "stage_mean_n" in SCORERS


@pytest.mark.parametrize("space", list_spaces())
def test_zoo_models_are_points_of_the_spaces(space):
    """Both are laid out by nas.core.families: the same network (isomorphic labelled graphs, so the
    same arch id) and the same cost, at ImageNet and small-image sizes."""
    sp = get_space(space)
    for name, (structure, width) in sp.references().items():
        for size, classes in ((224, 1000), (32, 10)):
            built = sp.build(structure, width, size, classes)
            zoo = model_spec(name, input_size=size, classes=classes)
            assert same_network(built, zoo), (name, size)
            assert spec_cost(built).total == spec_cost(zoo).total, (name, size)


def test_scope_names_are_built_and_parsed_in_one_place():
    block = names.block_path(2, 3)
    conv = names.conv_layer(block, 0, 1)
    assert conv == "stages.2.blocks.3.convs.0_1.conv"
    assert names.block_of(conv) == block and names.block_of(names.join_op(block, 2)) == block
    assert names.block_of(names.transition_layer(2, "conv")) is None
    assert names.stage_of(conv) == "stage3" == names.stage_label(2)
    assert names.stage_of(names.stem_layer("conv")) == "stem"
    assert names.stage_of(names.head_layer("fc")) == "head"
    assert names.stage_of("layer1.0.conv1") == "" and names.stage_of("layer1.0", other=None) == (
        "layer1"
    )
    assert names.parse_conv_key(names.conv_key(1, 12)) == (1, 12)
    assert names.stage_index("stage3") == 2 and names.stage_index("stem") is None
    assert names.scope_path("stage3") == "stages.2" and names.scope_path(block) == block
    assert names.short_label(conv, "stage3", conv_edge=True) == "blocks.3.0_1"
    assert names.short_label(conv, block, conv_edge=True) == "0_1"
    transition = names.transition_layer(2, "conv")
    assert names.short_label(transition, "stage3", conv_edge=False) == "transition FP"


def test_spec_graph_scopes_use_the_scheme():
    ops = lower(model_spec("bireal_resnet18", input_size=32, classes=10))
    stages = {op.stage for op in ops}
    assert stages == {"stem", "head", *(names.stage_label(s) for s in range(4))}
    blocks = {names.block_of(op.name) for op in ops} - {None}
    assert blocks == {names.block_path(s, b) for s in range(4) for b in range(2)}


def test_public_api_is_lazy_and_complete():
    assert nas.__all__ == sorted(nas._EXPORTS) and set(nas.__all__) <= set(dir(nas))
    for name in nas.__all__:
        assert getattr(nas, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nas.nope  # noqa: B018


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_the_spec_side_imports_no_torch():
    code = (
        f"import sys, {', '.join(SPEC_SIDE)}\n"
        "from nas import ArchSpec, arch_id, spec_cost, list_models, analyze_spec, get_scorer\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "from nas import build_model\n"
        "assert 'torch' in sys.modules\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr


def test_no_import_cycles_among_library_modules():
    grimp = pytest.importorskip("grimp")  # comes with import-linter (the dev extra)
    graph = grimp.build_graph("nas", "search_spaces")
    modules = {m for m in graph.modules if m.split(".")[0] in ("nas", "search_spaces")}
    for m in sorted(modules):
        for d in graph.find_modules_directly_imported_by(m) & modules:
            assert graph.find_shortest_chain(importer=d, imported=m) is None, (m, d)
