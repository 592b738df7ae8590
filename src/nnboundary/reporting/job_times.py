"""Where a workflow run's time went: per rule, from the ``benchmark:`` file Snakemake writes for
every job (``results/benchmarks/<rule>/…tsv``; the first row of each: Snakemake's wall-clock
``s`` and ``cpu_time``), the number of jobs, their total, mean and largest wall-clock seconds
(and which job was the largest), their CPU seconds and its share of the total
(:func:`job_times`). The ``job_times`` rule writes the table for the report
(``nnboundary benchmark jobs``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import InputFileError
from ..formats.tables import write_csv
from . import document


def read_benchmark(path) -> tuple[float, float]:
    """Wall-clock ``s`` and ``cpu_time`` (NaN if absent) of a Snakemake benchmark file's first
    row."""
    rows = path.read_text().splitlines()
    if len(rows) < 2:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no row after the header)")
    header, first = rows[0].split("\t"), rows[1].split("\t")
    if "s" not in header:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no column 's')")
    wall = float(first[header.index("s")])
    cpu = float(first[header.index("cpu_time")]) if "cpu_time" in header else float("nan")
    return wall, cpu


def job_times(folder: str = "results/benchmarks", files=None) -> list[dict[str, Any]]:
    """Per rule (the first folder under ``folder``, or the file name for a rule without
    wildcards): ``jobs``, the ``total_s``, ``mean_s`` and largest (``max_s``) wall-clock seconds
    of their Snakemake benchmark files, which job was the largest (``max_job``: its path under
    the rule's folder), their CPU seconds ``cpu_s`` and its ``share`` of the total
    (cpu_s / Σ cpu_s); sorted by CPU seconds, largest first. ``files``: the benchmark files to
    read (all ``*.tsv`` under ``folder`` when None), e.g. exactly the jobs of one grid."""
    root = Path(folder)
    if files is None:
        if not root.is_dir():
            raise InputFileError(f"no folder {root}; run the workflow first (every rule writes "
                                 f"a benchmark file under {root}/)")
        files = sorted(root.rglob("*.tsv"))
    per_rule: dict[str, list[tuple[float, float, str]]] = {}
    for path in map(Path, files):
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            raise InputFileError(f"{path} is not under {root}") from None
        rule = parts[0] if len(parts) > 1 else path.stem
        job = "/".join(parts[1:]).removesuffix(".tsv") if len(parts) > 1 else ""
        wall, cpu = read_benchmark(path)
        per_rule.setdefault(rule, []).append((wall, cpu, job))
    total = sum(c for v in per_rule.values() for _, c, _ in v) or 1.0
    table = []
    for rule, v in per_rule.items():
        walls, cpus = [w for w, _, _ in v], [c for _, c, _ in v]
        largest = max(v, key=lambda item: item[0])
        table.append({"rule": rule, "jobs": len(v), "total_s": sum(walls),
                      "mean_s": sum(walls) / len(v), "max_s": largest[0],
                      "max_job": largest[2], "cpu_s": sum(cpus), "share": sum(cpus) / total})
    return sorted(table, key=lambda row: (-row["cpu_s"], row["rule"]))


def print_job_times(table: list[dict[str, Any]], file=None) -> None:
    """The table of :func:`job_times`: wall-clock seconds per job (which include waiting for a
    core when more jobs run than there are cores) and CPU seconds, whose shares say where the
    work goes."""
    file = file or sys.stdout
    print(f"{'rule':<20} {'jobs':>5} {'wall s':>9} {'mean s':>8} {'max s':>8} {'cpu s':>9} "
          f"{'cpu share':>9}", file=file)
    for row in table:
        print(f"{row['rule']:<20} {row['jobs']:>5d} {row['total_s']:>9.1f} {row['mean_s']:>8.2f} "
              f"{row['max_s']:>8.2f} {row['cpu_s']:>9.1f} {row['share']:>9.1%}", file=file)
    print(f"{'all':<20} {sum(r['jobs'] for r in table):>5d} "
          f"{sum(r['total_s'] for r in table):>9.1f} {'':>8} {'':>8} "
          f"{sum(r['cpu_s'] for r in table):>9.1f}  (summed over jobs, also parallel ones)",
          file=file)


JOB_TIMES_CAPTION = (
    "Per rule, from the benchmark file Snakemake writes for each job of this grid: the number "
    "of jobs, their total and largest wall-clock seconds (the largest job named), and their CPU "
    "seconds with the rule's share of all CPU seconds. Wall seconds of jobs that ran side by "
    "side overlap and include waiting for a core, so their sum is not the run's duration; the "
    "CPU shares say where the work went.")


def job_times_document(table: list[dict[str, Any]]):
    """The job-times table as a :mod:`nnboundary.reporting.document` (for the report's HTML
    page)."""
    header = ["rule", "jobs", "total wall s", "mean wall s", "largest wall s", "largest job",
              "CPU s", "CPU share"]
    rows = [[r["rule"], str(r["jobs"]), f"{r['total_s']:.1f}", f"{r['mean_s']:.2f}",
             f"{r['max_s']:.2f}", r["max_job"] or "–", f"{r['cpu_s']:.1f}",
             f"{100 * r['share']:.1f} %"] for r in table]
    rows.append(["all", str(sum(r["jobs"] for r in table)),
                 f"{sum(r['total_s'] for r in table):.1f}", "", "", "",
                 f"{sum(r['cpu_s'] for r in table):.1f}", "100 %"])
    return [document.Heading("Job times per rule"),
            document.Table(header, rows, caption=JOB_TIMES_CAPTION)]


def write_job_times(table: list[dict[str, Any]], csv_path=None, html_path=None) -> None:
    """The table as CSV (one row per rule) and as an HTML page, each written atomically."""
    if csv_path is not None:
        import pandas as pd

        write_csv(csv_path, pd.DataFrame(table))
    document.write(job_times_document(table), None, html_path, "Job times")
