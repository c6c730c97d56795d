"""Benchmarks of mailflow against the real test bed; `make bench` runs bench/run.py.

The test bed lives in tests/testbed/ (imported as ``testbed``, as the tests do): put
tests/ on the path before any benchmark module imports it.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
