"""Records which top-level modules a Python process imported, for tests/test_runtime_deps.py.

The tests put this folder on PYTHONPATH of every Snakemake run they start (tests/conftest.py),
so Snakemake itself (the report included) and every job's ``python -m nnboundary ...`` load it.
At exit the process writes the names of its top-level modules to a file of its own under
$NNBOUNDARY_IMPORT_LOG. Nothing else changes.
"""

import atexit
import os
import sys


def _write() -> None:
    folder = os.environ.get("NNBOUNDARY_IMPORT_LOG")
    if not folder:
        return
    names = sorted({name.partition(".")[0] for name in list(sys.modules)})
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as handle:
            handle.write(" ".join(sys.argv) + "\n" + "\n".join(names) + "\n")
    except OSError:
        pass


atexit.register(_write)
