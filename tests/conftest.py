"""Shared test helpers: the repo root, a tiny config, and a runner for the real Snakefile."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "data" / "tiny_config.yaml"
# Every Snakemake run the tests start records the modules each of its processes imports
# (tests/import_log/sitecustomize.py), for tests/test_runtime_deps.py.
IMPORT_HOOK = REPO / "tests" / "import_log"
IMPORT_LOG = Path(os.environ.get("NNBOUNDARY_IMPORT_LOG") or
                  Path(tempfile.gettempdir()) / f"nnboundary-imports-{os.getpid()}")
if "NNBOUNDARY_IMPORT_LOG" not in os.environ:
    atexit.register(shutil.rmtree, IMPORT_LOG, True)

if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repo's Snakefile in ``workdir`` (which holds its own config.yaml)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(IMPORT_HOOK), env.get("PYTHONPATH"))
                                        if p)
    env["NNBOUNDARY_IMPORT_LOG"] = str(IMPORT_LOG)
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture
def tiny_workdir(tmp_path: Path) -> Path:
    """A working directory holding the tiny config as ``config.yaml``."""
    shutil.copy(TINY_CONFIG, tmp_path / "config.yaml")
    return tmp_path


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """The tiny grid run to completion once, shared by the end-to-end tests (which only read
    it, or write beside results/)."""
    workdir = tmp_path_factory.mktemp("e2e")
    shutil.copy(TINY_CONFIG, workdir / "config.yaml")
    snakemake(workdir, "--cores", "2")
    return workdir
