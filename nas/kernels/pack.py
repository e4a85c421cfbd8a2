"""``python -m nas.kernels.pack MODEL [--checkpoint STATE] [-o FILE]``: a trained network as a
packed inference file.

MODEL is a zoo name or an ArchSpec JSON file; ``--checkpoint`` a state dict of that network, or a
training checkpoint of :mod:`runners.train` (its ``"model"`` entry). The network is packed in eval
mode (:func:`nas.kernels.packed.pack_model`), checked against the float module on random inputs
(same predicted classes, logits within float rounding unless a pre-activation within rounding of
zero takes the other sign; the float module's own float64 run is printed beside it as the measure
of how far rounding alone moves this network's logits), and written atomically by
:func:`~nas.kernels.packed.save_packed`; the file's size is printed beside the storage the paper
counts for the spec. Packed inference is exact for networks trained with +1 padding
(``"padding": "one"``): a checkpoint of a network that pads with zeros is refused. Without a
checkpoint the network is packed as initialised (seeded, with +1 padding), which is enough to see
its size and speed. Load the file with
:func:`~nas.kernels.packed.load_packed`.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nas import _cli


def _state_dict(path: str) -> dict:
    """The network weights in ``path``: a state dict, or a training checkpoint holding one."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise _cli.UsageError(f"no checkpoint at {path}") from None
    except Exception as e:  # not a torch.save file: the unpickler fails in many ways
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:90]
        raise _cli.UsageError(f"cannot read the checkpoint {path} ({why})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # runners.train's checkpoint
    if not isinstance(state, dict):
        raise _cli.UsageError(f"{path} holds no state dict (a {type(state).__name__})")
    return state


def pack(
    model_arg: str, checkpoint: str | None, out: str | None, check: int, seed: int = 0
) -> dict:
    """Pack, check and save; returns what ``--json`` prints."""
    import torch

    from nas import build_model, spec_cost
    from nas.kernels.packed import pack_model, save_packed

    spec = _cli.load_model_arg(model_arg)
    if checkpoint is None:
        spec = spec.replace(padding="one")
    elif spec.padding != "one":
        raise _cli.UsageError(
            f"{spec.name} pads its binary convs with {spec.padding!r}: packed inference is exact "
            'only for networks trained with "padding": "one"'
        )
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same initialised network each run, where none is given
        model = build_model(spec)
    if checkpoint is not None:
        missing, unexpected = [], []
        try:
            result = model.load_state_dict(_state_dict(checkpoint), strict=False)
            missing, unexpected = result.missing_keys, result.unexpected_keys
        except RuntimeError as e:  # a tensor of another shape
            raise _cli.UsageError(
                f"{checkpoint} does not fit {spec.name}: {str(e).splitlines()[-1].strip()}"
            ) from None
        if missing or unexpected:
            example = (missing or unexpected)[0]
            raise _cli.UsageError(
                f"{checkpoint} does not fit {spec.name}: {len(missing)} missing and "
                f"{len(unexpected)} unexpected tensors (e.g. {example!r}); a candidate trained "
                "as a proxy needs its proxy spec"
            )
    model.eval()
    packed = pack_model(model)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(check, 3, spec.input_size, spec.input_size, generator=g)
    with torch.no_grad():
        expected, got = model(x), packed(x)
        in_float64 = copy.deepcopy(model).double()(x.double()).float()
    scale = expected.abs().max().item() or 1.0
    path = Path(out or f"{spec.name}.packed.pt")
    save_packed(packed, path)
    file_mbit = path.stat().st_size * 8 / 1e6
    storage = spec_cost(spec).total.storage_mbit
    return {
        "model": spec.name,
        "file": str(path),
        "file_mbit": file_mbit,
        "storage_mbit": storage,
        "file_over_storage": file_mbit / storage,
        "check_images": check,
        "same_class": int((got.argmax(1) == expected.argmax(1)).sum()),
        "max_logit_difference": (got - expected).abs().max().item() / scale,
        "float64_logit_difference": (in_float64 - expected).abs().max().item() / scale,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(
        prog="python -m nas.kernels.pack",
        description="Pack a trained binary CNN for bit-packed inference and save it.",
    )
    parser.add_argument("model", help="a zoo model name, or a path to an ArchSpec .json")
    parser.add_argument("--checkpoint", help="its weights: a state dict or a training checkpoint")
    parser.add_argument("-o", "--out", help="the packed file (default: MODEL.packed.pt)")
    parser.add_argument(
        "--check", type=int, default=4, help="random images to compare on (default: 4)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.check < 1:
        parser.error("--check must be at least 1")
    result = pack(args.model, args.checkpoint, args.out, args.check)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{result['model']}: wrote {result['file']}, {result['file_mbit']:.2f} Mbit "
        f"({result['file_over_storage']:.3f}x the {result['storage_mbit']:.2f} Mbit of its "
        "binary and 32-bit weights)"
    )
    print(
        f"checked on {result['check_images']} random images: the same class for "
        f"{result['same_class']}, logits within {result['max_logit_difference']:.1e} of their "
        f"range of the float module's (its own float64 run differs by "
        f"{result['float64_logit_difference']:.1e}: rounding flips the sign of a pre-activation "
        "near zero, in an untrained network most of all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run("nas.kernels.pack", main))
