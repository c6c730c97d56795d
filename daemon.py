"""Entry point: `python daemon.py` is the same program as the `mailflow` command."""
from mailflow.cli import main

main()
