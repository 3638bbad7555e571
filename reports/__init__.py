"""Reports (installed as ``compbench.reports``): ``tables`` renders leaderboards and run comparisons
from stored records alone; ``chunking`` and ``tradeoff`` drive measurements through the harness
(``compbench.runner`` and ``compbench.measure``) and write report folders (markdown, matplotlib
plots, and the CSV/JSON they were drawn from). The harness never imports reports; only the CLI does."""
