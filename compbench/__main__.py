"""``python -m compbench`` runs the CLI."""
from .cli import main

main()
