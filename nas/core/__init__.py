"""The spec side, without torch: an architecture's description (:mod:`nas.core.spec`), its
layer graph, cost as the paper counts it, gradient-path metrics and ranking keys, the zoo and
its registry, the budget, and the files a run and an exported model leave. Importing it never
imports torch (an import contract says so); :mod:`nas.nn` builds the networks on it."""
