"""``python -m nas.final RUN_DIR``: a search run's best candidate and its baseline trained with
the final recipe, exported and packed (the application is :mod:`pipeline.final`; this module
only starts it, as :mod:`nas.search` does)."""

import sys

if __name__ == "__main__":
    from nas import cli
    from pipeline.final import main

    sys.exit(cli.run("nas.final", main))
