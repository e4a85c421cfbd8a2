"""The Triton binary conv (``nas.nn.kernels.triton_conv``) is exact against ``reference_conv2d``.

No GPU here: the kernel runs in Triton's CPU interpreter. ``TRITON_INTERPRET=1`` must be set
before the kernel is decorated (``triton.jit`` reads it then), and it would leak into every
later test and child process of this pytest run if set in ``os.environ`` here; so the kernel
runs in one child process with the variable set, which checks every case and prints the results
as JSON, and the tests below read them. The same child first checks that importing the module
does not import Triton and that a missing Triton gives the actionable ImportError.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.nn.kernels.triton_conv import EXACTNESS_CASES, launch_configs


def _random_cases(count: int, seed: int = 1) -> list[tuple]:
    """Seeded random shapes (reproducible): batch 1-2, 1-200 input channels, 1-70 output
    channels, 1-7 pixels a side, 3x3 and 1x1, strides 1 and 2, with or without the epilogue."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        kernel = rng.choice([1, 3])
        stride = rng.choice([1, 2])
        size = (rng.randint(1, 7), rng.randint(1, 7))
        c, cout = rng.randint(1, 200), rng.randint(1, 70)
        cases.append((rng.randint(1, 2), c, *size, cout, kernel, stride, rng.random() < 0.7))
    return cases


CASES = EXACTNESS_CASES + _random_cases(8)

SCRIPT = """
import json, sys
import torch
import nas.nn.kernels.triton_conv as tc

report = {"triton_imported_by_import": "triton" in sys.modules}
sys.modules["triton"] = None  # as if Triton were not installed
try:
    tc.triton_binary_conv2d(*tc.random_case(1, 3, 3, 3, 2))
    report["missing_triton_error"] = None
except ImportError as e:
    report["missing_triton_error"] = str(e)
del sys.modules["triton"]

report["cases"] = []
for seed, case in enumerate(json.loads(sys.argv[1])):
    args = tc.random_case(*case, seed=seed)
    bad, expected = tc.mismatches(*args)  # packed activations
    bad_signs = tc.mismatches(*args, signs=True)[0]  # int8 signs
    report["cases"].append({"bad": bad, "bad_signs": bad_signs, "distinct": len(expected.unique())})

# the launch configs the GPU autotuner tries, each on three cases (blocks larger than the output;
# 70 channels: 4 words a tap, 130: 6, which a step of 4 words leaves partly filled; a 1x1 conv
# of 3 channels: one step, fewer than a split launch's programs), both inputs; the split
# launches share one workspace, which each must leave zero for the next
report["configs_bad"] = []
for case in [(2, 70, 6, 7, 50, 3, 1), (1, 130, 5, 4, 20, 3, 2), (1, 3, 3, 3, 5, 1, 1)]:
    args = tc.random_case(*case, seed=0)
    for signs in (False, True):
        for c in tc.launch_configs():
            report["configs_bad"].append(tc.mismatches(*args, config=c, signs=signs)[0])
report["workspace_nonzero"] = [int(w.count_nonzero()) for w in tc._WORKSPACES.values()]

# signs_of against the floats packed: their signs (sign(0) = +1), +1 padding, int8 NHWC
import torch.nn.functional as F
from nas.nn.kernels import pack_activations
v = torch.randn(2, 70, 3, 4)
v[0, 0, 0, 0] = 0.0
signs = tc.signs_of(pack_activations(v, pad=1))
expected = F.pad(torch.where(v < 0, -1, 1), (1, 1, 1, 1), value=1).permute(0, 2, 3, 1)
same = bool(torch.equal(signs.long(), expected))
report["signs_of"] = [str(signs.dtype), list(signs.shape), same]

# negative control: one flipped weight bit must change the output
x, w, stride, scale, shift, residual = args = tc.random_case(1, 70, 7, 7, 33, 3, 1, seed=0)
_, expected = tc.mismatches(*args)
flipped = w.bits.clone()
flipped[1, 1, 1, 5] ^= 1 << 3  # channel 64 + 3, centre tap, output channel 5
out = tc.triton_binary_conv2d(x, tc.PackedWeights(flipped, w.channels), stride, scale, shift,
                              residual)
report["flipped_bad"] = int((out != expected).sum())
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def report() -> dict:
    pytest.importorskip("triton", reason="pip install -e .[dev] installs it")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(CASES)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CASES)), ids=[str(c) for c in CASES])
def test_triton_conv_is_exact(report, index):
    """Every output equals the reference bit for bit (float epilogue included); the fixed
    cases' references are not trivial (several distinct values), so a wrong kernel shows."""
    result = report["cases"][index]
    assert result["bad"] == 0, f"{result['bad']} outputs differ for {CASES[index]}"
    assert result["bad_signs"] == 0, f"{result['bad_signs']} differ with int8 signs as input"
    if index < len(EXACTNESS_CASES):
        assert result["distinct"] > 2


@pytest.mark.slow
def test_a_flipped_weight_bit_is_caught(report):
    # the flipped bit changes the dot by 2 at every output pixel of that channel
    assert report["flipped_bad"] == 7 * 7


@pytest.mark.slow
def test_import_needs_no_triton_and_names_the_fix(report):
    assert report["triton_imported_by_import"] is False
    assert "pip install triton" in report["missing_triton_error"]
    assert "TRITON_INTERPRET=1" in report["missing_triton_error"]


def test_bench_gpu_without_cuda_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: python -m speed.gpu runs there")
    done = subprocess.run(
        [sys.executable, "-m", "speed.gpu", "--json"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "bench_gpu needs a CUDA GPU (torch.cuda.is_available() is False)\n"


@pytest.mark.slow
def test_every_gpu_launch_config_is_exact(report):
    configs = launch_configs()

    assert len(report["configs_bad"]) == 6 * len(configs)
    assert not any(report["configs_bad"])
    assert any(c["SPLIT_K"] > 1 for c in configs)  # the split launches were among them
    assert report["workspace_nonzero"] == [0]  # and left their workspace zero


@pytest.mark.slow
def test_signs_of_gives_the_signs_as_int8_nhwc(report):
    # 3x4 pixels with one pixel of padding each side, 70 channels
    assert report["signs_of"] == ["torch.int8", [2, 5, 6, 70], True]


def test_signs_input_must_be_int8_nhwc():
    from nas.nn.kernels.triton_conv import random_case, triton_binary_conv2d

    pytest.importorskip("triton", reason="pip install -e .[dev] installs it")
    x, w, *_ = random_case(1, 8, 3, 3, 4)
    with pytest.raises(ValueError, match="x must be Packed or int8 NHWC signs"):
        triton_binary_conv2d(torch.ones(1, 5, 5, 8), w)
