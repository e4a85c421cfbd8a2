"""The search application, above the library (:mod:`nas`), the spaces, training (:mod:`runners`)
and the run files (:mod:`results`): settings, run directory, sampling loop, ranking, writing and
the dispatch to training, one module each. Its command is ``python -m nas.search``
(:mod:`pipeline.cli`)."""
