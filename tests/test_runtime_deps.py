"""Every module a pipeline run imports comes from what ``pip install -e .`` installs.

The README's main command installs the package without extras; the test command adds the test
extra (pytest, snakefmt, ...), whose own dependencies can hide a missing runtime dependency:
``snakemake --report`` needs pygments, which only pytest brought in, so every test passed while
a user's report failed. Here every Snakemake process the tests start (the workflow itself, every
job and the report) records the top-level modules it imported
(tests/import_log/sitecustomize.py, put on PYTHONPATH by tests/conftest.py); each must belong to
the standard library, to nnboundary, or to a distribution in the closure of the package's own
requirements without its extras (``snakemake[reports]`` counts its ``reports`` extra).
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys

import pytest
from packaging.requirements import Requirement

from conftest import IMPORT_LOG, snakemake

pytestmark = pytest.mark.e2e


#: Modules a process imports only because the test extra installed them, never needed by a run:
#: Snakemake loads every installed plugin package it finds (the SLURM executor comes with the
#: test extra), urllib3 uses PySocks when it is present (selenium brings it), tenacity its
#: tornado support and tabulate wcwidth (ipykernel, for the example notebook, brings both).
OPPORTUNISTIC = (re.compile(r"^snakemake_(executor|storage|report|logger|scheduler)_plugin_"),
                 re.compile(r"^socks$"), re.compile(r"^tornado$"), re.compile(r"^wcwidth$"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure(root: str = "nnboundary") -> set[str]:
    """The distributions ``pip install <root>`` (no extras) installs, markers evaluated for the running interpreter."""
    seen: set[str] = set()
    todo = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        key = (canonical(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return {name for name, _ in seen}


def imported_modules() -> dict[str, set[str]]:
    """Top-level module → the commands (argv) of the processes that imported it."""
    found: dict[str, set[str]] = {}
    for path in IMPORT_LOG.glob("*.txt"):
        command, *names = path.read_text().splitlines()
        for name in names:
            found.setdefault(name, set()).add(command)
    return found


def test_base_closure_follows_extras_of_requirements():
    closure = base_closure()
    assert {"snakemake", "torch", "numpy", "pandas", "pygments"} <= closure
    assert "pytest" not in closure and "selenium" not in closure  # test extra only


def test_every_import_of_the_workflow_its_jobs_and_the_report_is_a_runtime_dependency(finished):
    snakemake(finished, "--report", "results/runtime_deps_report.html")
    found = imported_modules()
    commands = set().union(*found.values()) if found else set()
    assert any("--report" in c for c in commands), "the report process was not recorded"
    assert any("nnboundary" in c for c in commands), "no job was recorded"
    assert "pygments" in found  # the report's: proves the recorder sees what it must check
    closure = base_closure()
    owners = metadata.packages_distributions()
    missing = {}
    for module, where in sorted(found.items()):
        if module in sys.stdlib_module_names or module in ("nnboundary", "sitecustomize"):
            continue
        if any(pattern.search(module) for pattern in OPPORTUNISTIC):
            continue
        distributions = {canonical(d) for d in owners.get(module, [])}
        if distributions and not distributions & closure:
            missing[module] = (sorted(distributions), sorted(where)[:2])
    assert not missing, (
        "modules imported by a pipeline run whose distributions `pip install -e .` does not "
        f"install (add them to pyproject.toml's dependencies): {missing}")


def test_jobs_that_only_read_an_mlp_run_without_torch(finished):
    """The feature dumps of the MLP and the run figure of a 2-D set read the checkpoint file
    and run the network in numpy (nnboundary.models.numpy_mlp): no 2.3–2.6 s torch import in those jobs.
    The conv net's feature dumps still go through torch."""
    found = imported_modules()
    with_torch = found.get("torch", set())
    commands = set().union(*found.values())
    dumps = [c for c in commands if " features --checkpoints " in c]
    mlp = [c for c in dumps if "/mlp/" in c]
    cnn = [c for c in dumps if "/cnn/" in c]
    assert mlp and cnn, dumps
    assert not set(mlp) & with_torch
    assert set(cnn) <= with_torch
    pictures = [c for c in commands if " figures run " in c and "blobs/mlp" in c]
    assert pictures and not set(pictures) & with_torch
    assert any(" train " in c for c in with_torch)  # the recorder sees torch where it is
