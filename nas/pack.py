"""``python -m nas.pack MODEL [--checkpoint STATE] [-o FILE]``: a trained network as a
packed inference file.

MODEL is a zoo name, an ArchSpec JSON file, a trained network's folder (:mod:`nas.core.model_dir`:
its spec and weights; the packed file goes beside them), or a search run directory (its best
fully trained candidate's folder); ``--checkpoint`` a state dict of that network, or a training
checkpoint of :mod:`runners.train` (its ``"model"`` entry). The network is packed in eval
mode (:func:`nas.nn.packed.network.pack_model`), checked against the float module on random inputs
(same predicted classes, logits within float rounding unless a pre-activation within rounding of
zero takes the other sign; the float module's own float64 run is printed beside it as the measure
of how far rounding alone moves this network's logits), and written atomically by
:func:`~nas.nn.packed.network.save_packed`; the file's size is printed beside the storage the paper
counts for the spec. Packed inference is exact for networks trained with +1 padding
(``"padding": "one"``): a checkpoint of a network that pads with zeros is refused. Without a
checkpoint the network is packed as initialised (seeded, with +1 padding), which is enough to see
its size and speed. The file is ``-o FILE``, or else ``NAME.packed.pt`` in the current folder, NAME
the spec's name made a plain file name (:func:`default_output`: a spec names a network, never
where to write). Load the file with :func:`~nas.nn.packed.network.load_packed`.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from nas import build_model, cli, spec_cost
from nas.core.graph import arch_id
from nas.core.model_dir import MODELS, PACKED, SPEC, WEIGHTS, best_model_dir, is_model_dir
from nas.core.names import printable
from nas.nn.packed.network import pack_model, save_packed

MAX_FILE_NAME = 100  # characters of the default output's name taken from the spec's name


def default_output(spec) -> Path:
    """``NAME.packed.pt`` in the current folder: NAME is the spec's name with every character
    but ``A-Za-z0-9._-`` replaced by ``_``, no leading dot or dash, at most
    :data:`MAX_FILE_NAME` characters, or the spec's arch id where nothing is left. A name such as
    ``../../x`` or ``/etc/x`` cannot write outside the folder."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", spec.name)[:MAX_FILE_NAME].lstrip(".-")
    return Path(f"{name or arch_id(spec)}.packed.pt")


def _first_sentence(text: str) -> str:
    """The first sentence of an exception's message, on one line, without terminal escapes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    line = text.splitlines()[0].strip() if text else ""
    end = line.find(". ")
    return line[:end] if end > 0 else line.rstrip(".")


def _state_dict(path: str) -> dict:
    """The network weights in ``path``: a state dict, or a training checkpoint holding one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise cli.UsageError(f"no checkpoint at {path}") from None
    except OSError:  # a folder, no permission: nas.cli names the file
        raise
    except pickle.UnpicklingError as e:  # torch's message runs over 10 lines: say why, briefly
        message = str(e)
        detail = message.split("WeightsUnpickler error:", 1)[-1]
        raise cli.UsageError(
            f"cannot read the checkpoint {path}: torch.load(weights_only=True) refused it "
            f"({_first_sentence(detail)}); a checkpoint is a state dict saved with "
            "torch.save(model.state_dict(), path) or a runners.train checkpoint"
        ) from None
    except Exception as e:  # not a torch.save file: the reader fails in many ways
        why = _first_sentence(str(e)) or ("the file ends early" if isinstance(e, EOFError) else "")
        raise cli.UsageError(
            f"cannot read the checkpoint {path}: not a file of torch.save "
            f"({type(e).__name__}{': ' if why else ''}{why})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # runners.train's checkpoint
    if not isinstance(state, dict):
        raise cli.UsageError(f"{path} holds no state dict (a {type(state).__name__})")
    return state


def pack(
    model_arg: str, checkpoint: str | None, out: str | None, check: int, seed: int = 0
) -> dict:
    """Pack, check and save; returns what ``--json`` prints."""
    if Path(model_arg).is_dir():  # a trained network's folder, or a run's best
        folder = Path(model_arg)
        if not is_model_dir(folder) and (folder := best_model_dir(folder)) is None:
            raise cli.UsageError(
                f"{model_arg} is neither a trained network's folder ({SPEC} and {WEIGHTS}) nor "
                f"a search run with a fully trained candidate in {MODELS}/"
            )
        model_arg, checkpoint = str(folder / SPEC), checkpoint or str(folder / WEIGHTS)
        out = out or str(folder / PACKED)
    spec = cli.load_model_arg(model_arg)
    if checkpoint is None:
        spec = spec.replace(padding="one")
    elif spec.padding != "one":
        raise cli.UsageError(
            f"{printable(spec.name)} pads its binary convs with {spec.padding!r}: packed "
            'inference is exact only for networks trained with "padding": "one"'
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
            raise cli.UsageError(
                f"{checkpoint} does not fit {printable(spec.name)}: "
                f"{str(e).splitlines()[-1].strip()}"
            ) from None
        if missing or unexpected:
            example = (missing or unexpected)[0]
            raise cli.UsageError(
                f"{checkpoint} does not fit {printable(spec.name)}: {len(missing)} missing and "
                f"{len(unexpected)} unexpected tensors (e.g. {example!r}); a candidate trained "
                "as a proxy needs its proxy spec"
            )
    model.eval()
    packed = pack_model(model)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(check, spec.in_channels, spec.input_size, spec.input_size, generator=g)
    with torch.no_grad():
        expected, got = model(x), packed(x)
        in_float64 = copy.deepcopy(model).double()(x.double()).float()
    scale = expected.abs().max().item() or 1.0
    path = Path(out) if out else default_output(spec)
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
    parser = cli.Parser(
        prog="python -m nas.pack",
        description="Pack a trained binary CNN for bit-packed inference and save it.",
    )
    parser.add_argument(
        "model",
        help="a zoo model name, an ArchSpec .json, a trained network's folder, or a search run "
        "directory (its best trained candidate)",
    )
    parser.add_argument("--checkpoint", help="its weights: a state dict or a training checkpoint")
    parser.add_argument(
        "-o",
        "--out",
        help="the packed file (default: model.packed.pt in a trained network's folder, else "
        "NAME.packed.pt here, NAME the spec's name as a file name)",
    )
    parser.add_argument(
        "--check",
        type=cli.int_range(1, 4096, "number of images"),
        default=4,
        help="random images to compare on (default: 4)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = pack(args.model, args.checkpoint, args.out, args.check)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{printable(result['model'])}: wrote {printable(result['file'])}, "
        f"{result['file_mbit']:.2f} Mbit "
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
    sys.exit(cli.run("nas.pack", main))
