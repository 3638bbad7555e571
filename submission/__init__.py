"""Competition submission export and checks, installed as ``compbench.submission``."""
