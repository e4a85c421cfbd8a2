"""``python -m nas.search --budget 0.16GFLOPs``: the search's command, kept under its name.

The search application is the package :mod:`pipeline`, a layer above the library; this module
only starts it (the one import from the library upwards, declared in pyproject.toml's
import-linter contracts). The import sits under ``__main__`` on purpose: the search's evaluator
process, spawned by multiprocessing, re-imports this module as ``__mp_main__`` and must not load
the application (with it pandas, matplotlib and the training code) again."""

import sys

if __name__ == "__main__":
    from nas import cli
    from pipeline.cli import main

    sys.exit(cli.run("nas.search", main))
