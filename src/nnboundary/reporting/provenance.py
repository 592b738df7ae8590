"""What made a result set: ``results/provenance.json``, written by the workflow's last rule.

:func:`provenance` collects

- ``commit``: the workflow checkout's ``git rev-parse HEAD``, and ``clean``: whether its tracked
  files had no change (``git status --porcelain --untracked-files=no`` empty); both null outside
  a git checkout;
- ``config``: the validated config, defaults filled in (``results/config.yaml``), and
  ``config_sha256``: the SHA-256 of its canonical JSON (sorted keys);
- ``command``: the Snakemake command line that ran the workflow;
- ``cpu``: the CPU model (``/proc/cpuinfo``'s first ``model name``, else the platform's
  processor) and ``cores`` (``os.cpu_count()``), ``platform``, ``gpu`` (CUDA devices torch
  reports, where torch is installed);
- ``wall_seconds``: from the first job's start to the last job's end, each job's span read from
  its Snakemake benchmark file (its end the file's modification time, its start that minus its
  wall seconds); ``cpu_seconds``: the jobs' CPU seconds summed (the workflow's own process not
  included); ``jobs``: how many benchmark files were read;
- ``packages``: the installed versions of the packages a result depends on.

No torch is imported unless it is installed; nothing here changes a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .job_times import read_benchmark

#: The packages whose versions a result set records.
PACKAGES = ("nnboundary", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas",
            "pyarrow", "clarabel", "numba", "matplotlib", "snakemake")


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def cpu_model() -> str:
    """The CPU model: ``/proc/cpuinfo``'s first ``model name``, else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    try:
        metadata.version("torch")
    except metadata.PackageNotFoundError:
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def job_span(benchmarks: list[str | Path]) -> tuple[float, float, int]:
    """(wall seconds from the first job's start to the last job's end, CPU seconds summed,
    jobs read) from Snakemake benchmark files (module docstring)."""
    starts, ends, cpu = [], [], 0.0
    for path in benchmarks:
        wall, seconds = read_benchmark(Path(path))
        end = os.stat(path).st_mtime
        starts.append(end - wall)
        ends.append(end)
        cpu += seconds if seconds == seconds else 0.0
    if not ends:
        return 0.0, 0.0, 0
    return max(ends) - min(starts), cpu, len(ends)


def provenance(config: dict[str, Any], command: str, repo: str | Path,
               benchmarks: list[str | Path]) -> dict[str, Any]:
    """The record of the module docstring."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    status = _git(Path(repo), "status", "--porcelain", "--untracked-files=no")
    wall, cpu, jobs = job_span(benchmarks)
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "commit": _git(Path(repo), "rev-parse", "HEAD"),
        "clean": None if status is None else status == "",
        "command": command,
        "config_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "gpu": _gpus(),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "jobs": jobs,
        "packages": packages,
        "config": config,
    }
