"""``python -m nas.nn.kernels.build``: compile the binary conv kernels (run by ./setup.sh)."""

import sys

from nas.nn.kernels._native import available_paths, build

if __name__ == "__main__":
    try:
        build()
    except RuntimeError as e:
        print(f"warning: {e}; the PyTorch reference path will be used", file=sys.stderr)
        sys.exit(0)
    print(f"kernel paths on this CPU: {', '.join(available_paths())}", file=sys.stderr)
