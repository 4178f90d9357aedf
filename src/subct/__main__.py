"""``python -m subct`` runs the command line."""

from subct.cli import main

main()
