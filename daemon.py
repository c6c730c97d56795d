"""Entry point: `python daemon.py` is the same program as the `mailflow` command.

Run with any python3, it switches to the project's virtual environment (made by
`make install`) when there is one, so the pinned dependencies are used.
"""

import os
import sys
from pathlib import Path

_PYTHON = Path(__file__).resolve().parent / ".venv" / "bin" / "python"
if _PYTHON.exists() and Path(sys.prefix).resolve() != _PYTHON.parent.parent.resolve():
    if os.environ.get("MAILFLOW_REEXEC"):
        sys.exit(f"daemon.py: {_PYTHON} does not run inside its virtual environment")
    os.environ["MAILFLOW_REEXEC"] = "1"
    # argv[0] must be the venv interpreter: Python finds its venv (sys.prefix) from it.
    os.execv(_PYTHON, [str(_PYTHON), __file__, *sys.argv[1:]])  # noqa: S606 (our own venv)

from mailflow.cli import main  # noqa: E402  (after the switch to the venv)

main()
