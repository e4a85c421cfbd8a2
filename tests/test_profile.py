"""``python -m nas.profile``: JSON keys, snapshots of every zoo model, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas import list_models, model_spec
from nas.profile import main, profile, text_table

SNAPSHOTS = Path(__file__).parent / "snapshots"
ROOT = Path(__file__).parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas.profile", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", list_models())
def test_profile_matches_snapshot(name, update_snapshots):
    """larq-zoo style: the committed summary of every model; rerun with --update-snapshots after
    an intended change and review the diff."""
    current = profile(model_spec(name))
    path = SNAPSHOTS / f"{name}.json"
    if update_snapshots:
        path.write_text(json.dumps(current, indent=1) + "\n")
    saved = json.loads(path.read_text())
    assert current.keys() == saved.keys()
    for key, value in saved.items():
        if isinstance(value, float):
            assert current[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert json.loads(json.dumps(current[key])) == value, key


def test_json_output_has_the_documented_keys(capsys):
    assert main(["bireal_resnet18", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in (
        "flops",
        "bops",
        "fp_macs",
        "storage_mbit",
        "binary_params",
        "fp_params",
        "depth",
        "stages",
    ):
        assert key in data
    assert [s["stage"] for s in data["stages"]] == [
        "stem",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "head",
    ]
    for key in ("flops", "bops", "fp_macs", "storage_mbit", "binary_params", "fp_params"):
        assert sum(s[key] for s in data["stages"]) == pytest.approx(data[key])
    assert round(data["storage_mbit"], 1) == 33.2 and data["depth"] == 18
    binary = [layer for layer in data["layers"] if layer["binary"]]
    assert len(binary) == 16 and all(layer["capability_bits"] > 0 for layer in binary)


def test_options_and_spec_files(tmp_path, capsys):
    assert main(["igp_resnet37", "--json", "--input-size", "32", "--classes", "10"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert (small["input_size"], small["classes"]) == (32, 10)
    path = tmp_path / "spec.json"
    path.write_text(model_spec("igp_resnet37", input_size=32, classes=10).to_json())
    assert main([str(path), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file["flops"] == small["flops"] and from_file["arch_id"] == small["arch_id"]


def test_readable_summary_and_list():
    out = _cli("bireal_resnet18")
    assert out.returncode == 0
    assert "33.18" in out.stdout and "0.1640e9" in out.stdout and "capability" in out.stdout
    listing = _cli("--list")
    assert listing.returncode == 0
    assert all(name in listing.stdout for name in list_models())


def test_unknown_model_is_one_line_with_the_closest_names():
    out = _cli("bireal_resnet19")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "bireal_resnet18" in out.stderr


def test_malformed_spec_file_names_the_field(tmp_path):
    data = model_spec("bireal_resnet18").to_dict()
    data["stages"][1]["blocks"][0]["width"] = -4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    out = _cli(str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
    assert "stages[1].blocks[0].width: must be a positive integer" in out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    out = _cli(str(broken))
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    out = _cli(str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_usage_errors_exit_2():
    for args in ([], ["bireal_resnet18", "--input-size", "abc"], ["bireal_resnet18", "--bogus"]):
        out = _cli(*args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, args
        assert "Traceback" not in out.stderr


def test_text_table_lays_out_rows_as_pandas_did():
    """The summary's tables keep pandas' ``to_string(index=False)`` layout, without pandas (which
    took 10 s for a spec of 100,000 blocks)."""
    import pandas as pd  # noqa: PLC0415 - heavy: only this test's reference layout uses it

    rows = [
        {"layer": "stem.conv", "bits": 32, "in -> out": "3 -> 64", "MACs": "118.014 M"},
        {
            "layer": "stages.0.blocks.0.convs.0_1.conv",
            "bits": 1,
            "in -> out": "64 -> 64",
            "MACs": "9",
        },
        {"layer": "head.fc", "bits": 32, "in -> out": "512 -> 1000", "MACs": "-"},
    ]
    assert text_table(rows) == pd.DataFrame(rows).to_string(index=False)
    one = [{"depth": 18, "model": "bireal_resnet18"}]
    assert text_table(one) == pd.DataFrame(one).to_string(index=False)


def test_input_size_and_classes_are_checked_as_they_are_parsed():
    for flags, says in (
        (["--input-size", "0"], "argument --input-size: invalid input size (1-8192) value: '0'"),
        (["--classes", "1000001"], "argument --classes: invalid number of classes (1-1000000)"),
    ):
        out = _cli("bireal_resnet18", *flags)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr
