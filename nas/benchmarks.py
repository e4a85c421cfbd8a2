"""``python -m nas.benchmarks MODE``: the project's speed figures, kept under their command's name.

The benchmarks time the library, training and Ray, so they live above all of them
(:mod:`speed.suite`); this module only starts them (declared in pyproject.toml's
import-linter contracts), under ``__main__`` as :mod:`nas.search` does."""

import sys

if __name__ == "__main__":
    from nas import cli
    from speed.suite import main

    sys.exit(cli.run("nas.benchmarks", main))
