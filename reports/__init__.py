"""Reports over the results store (installed as ``compbench.reports``): leaderboard tables and run
comparisons. Reports read stored records only; they never import coders or torch."""
