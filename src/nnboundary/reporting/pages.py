"""README.md, docs/results.md and docs/benchmarks.md, rendered from the committed result sets
(``nnboundary docs``).

Each shipped config's result set lies under ``docs/results/<name>/`` (:data:`RESULT_SETS`): the
tables the workflow wrote to ``results/`` (``claims.csv``, ``findings.csv``, ``excluded.csv``,
``generalisation.csv``, ``linear_theory.csv``, ``collapse.csv``, ``depth.csv``, ``seeds.csv``,
``summary.csv``, ``convergence.csv``, ``job_times.csv``), ``config.yaml`` and the
``provenance.json`` the workflow's last rule wrote (:mod:`nnboundary.reporting.provenance`).

A template (``docs/templates/README.md``, ``docs/templates/results.md``) is Markdown with
placeholders ``{{ <set>.<value> }}``; :data:`VALUES` lists the values, each computed from the
set's files by the same code that made the tables in the workflow (the claims, findings,
theory, generalisation and collapse documents). An unknown placeholder, or a set that a
template names but ``docs/results/`` lacks, is an error, so a page never shows a number that
no table holds. The test suite renders both pages and compares them with the committed files.

No torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import document

#: The shipped configs whose result sets are committed: name → the config file applied on top
#: of config.yaml (None: config.yaml alone).
RESULT_SETS = {
    "default": None,
    "targets": "configs/targets.yaml",
    "regimes": "configs/regimes.yaml",
    "ablations": "configs/ablations.yaml",
    "collapse": "configs/collapse.yaml",
}
#: The pages: template under docs/templates → the rendered file, both relative to the root.
PAGES = {"README.md": "README.md", "results.md": "docs/results.md",
         "benchmarks.md": "docs/benchmarks.md"}
#: The tables a result set keeps from results/ (the rest of results/ is per-run data).
KEPT = ("claims.csv", "findings.csv", "excluded.csv", "generalisation.csv", "linear_theory.csv",
        "collapse.csv", "depth.csv", "seeds.csv", "summary.csv", "convergence.csv",
        "job_times.csv", "config.yaml", "provenance.json")
#: The figures a result set keeps (glob patterns under results/figures).
KEPT_FIGURES = ("overview.png", "collapse.png", "theory/**/*.png")

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\.([a-z_]+)\s*\}\}")


def duration(seconds: float) -> str:
    """``seconds`` as "1 h 2 min", "4 min 58 s" or "12 s" (rounded to the second)."""
    total = int(round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def shift_headings(text: str, by: int) -> str:
    """Every Markdown heading of ``text`` ``by`` levels deeper."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + by) + " ", text, flags=re.M)


@dataclass
class ResultSet:
    """One committed result set: its folder and name, its tables read on demand."""

    name: str
    folder: Path
    _tables: dict = field(default_factory=dict)

    def table(self, file: str) -> pd.DataFrame:
        if file not in self._tables:
            path = self.folder / file
            self._tables[file] = pd.read_csv(path) if path.exists() else pd.DataFrame()
        return self._tables[file]

    @cached_property
    def provenance(self) -> dict:
        path = self.folder / "provenance.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the result set '{self.name}' has no provenance; "
                                    "regenerate it (docs/results.md says how)")
        return json.loads(path.read_text())

    @cached_property
    def config(self) -> dict:
        return yaml.safe_load((self.folder / "config.yaml").read_text())

    @cached_property
    def runs(self) -> list:
        from ..settings.grid import runs

        return runs(self.config)


# -------------------------------------------------------------------------------------------
# The values a template can name: {{ <set>.<value> }}
# -------------------------------------------------------------------------------------------


def _runs(s: ResultSet) -> str:
    return f"{len(s.runs):,}"


def _seeds(s: ResultSet) -> str:
    return str(len(s.config["grid"]["seeds"]))


def _wall(s: ResultSet) -> str:
    return duration(s.provenance["wall_seconds"])


def _cpu(s: ResultSet) -> str:
    return duration(s.provenance["cpu_seconds"])


def _machine(s: ResultSet) -> str:
    p = s.provenance
    return f"{p['cpu']}, {p['cores']} cores"


def _commit(s: ResultSet) -> str:
    return (s.provenance["commit"] or "unknown")[:7]


def _provenance(s: ResultSet) -> str:
    p = s.provenance
    state = "clean tree" if p["clean"] else "tree with uncommitted changes"
    return (f"Made by commit `{_commit(s)}` ({state}) with `{p['command']}` "
            f"on {_machine(s)}: {_wall(s)} wall, {_cpu(s)} of job CPU, {p['jobs']} jobs, from "
            f"an empty `results/`; config hash `{p['config_sha256'][:12]}` "
            f"([provenance.json](results/{s.name}/provenance.json)).")


def _stop_loss(s: ResultSet) -> str:
    return f"{float(s.config['train']['until_loss']):g}"


def _jobs(s: ResultSet) -> str:
    return f"{s.provenance['jobs']:,}"


def _parallel(s: ResultSet) -> str:
    p = s.provenance
    return f"{p['cpu_seconds'] / p['wall_seconds']:.1f}"


def _longest_job(s: ResultSet) -> str:
    times = s.table("job_times.csv")
    return duration(float(times["max_s"].max()))


def _training_share(s: ResultSet) -> str:
    times = s.table("job_times.csv").set_index("rule")
    share = sum(float(times.loc[r, "share"]) for r in ("train", "retrain") if r in times.index)
    return f"{100 * share:.0f} %"


def _cells(group: pd.DataFrame) -> str:
    names = [f"{d}/{a}" + ("" if v == "base" else f"/{v}")
             for d, a, v in zip(group["dataset"], group["arch"], group["variant"])]
    return ", ".join(names) if names else "–"


def _by_value(table: pd.DataFrame, column: str, values) -> list[str]:
    """Per value of ``column``: "n: the cells" of the rows that have it, or "–"."""
    counted = [table[table[column] == v] for v in values]
    return [f"{len(c)}: {_cells(c)}" if len(c) else "–" for c in counted]


def _section(blocks: list, by: int) -> str:
    """A document of the workflow's (:mod:`.document`) as Markdown, its headings ``by`` levels
    deeper to sit inside a page."""
    return shift_headings(document.markdown(blocks), by)


def _timing(s: ResultSet) -> str:
    """A row of the benchmarks page's table of result sets."""
    config = RESULT_SETS[s.name] or "config.yaml"
    return document.md_row([f"`{config}`", _runs(s), _jobs(s), _wall(s), _cpu(s),
                            _longest_job(s), f"`{_commit(s)}`",
                            f"`{s.provenance['command']}`"])


def _answer(s: ResultSet) -> str:
    """The claims at each cell's final checkpoint: per claim, the cells where it holds, fails,
    and stays undecided (README's first table)."""
    from .claims import CLAIMS, FINAL

    table = s.table("claims.csv")
    final = table[table["milestone"].astype(str) == FINAL]
    rows = []
    for claim, (regime, _, says, _) in CLAIMS.items():
        group = final[(final["claim"] == claim) & (final["verdict"] != "not run")]
        if group.empty:
            continue
        rows.append([f"`{claim}` ({regime}): {says}",
                     *_by_value(group, "verdict", ("holds", "fails", "undecided"))])
    return "\n".join(document.md_table(["claim", "holds (cells)", "fails", "undecided"], rows))


def _closer(s: ResultSet) -> str:
    """Per regime, the cells whose last layer ends closer to each SVM target (findings.csv's
    ``closer_target``: a target that wins every pairwise sign test, else undecided)."""
    from ..settings.targets import TARGETS

    table = s.table("findings.csv")
    rows = []
    for regime, group in table.groupby("regime", sort=False):
        rows.append([f"`{regime}`",
                     *_by_value(group, "closer_target", (*TARGETS, "undecided"))])
    return "\n".join(document.md_table(["regime", *TARGETS, "undecided"], rows))


def _claims(s: ResultSet) -> str:
    from .claims import claims_blocks

    return _section(claims_blocks(s.table("claims.csv"), level=1), 2)


def _findings(s: ResultSet) -> str:
    from .findings import findings_document

    return _section(findings_document(s.table("findings.csv"), (), s.table("excluded.csv")), 2)


def _excluded(s: ResultSet) -> str:
    excluded = s.table("excluded.csv")
    if excluded.empty:
        return f"none of the {len(s.runs):,} runs"
    reasons = excluded["invalid_reason"].value_counts().sort_index()
    return (f"{len(excluded)} of {len(s.runs):,} runs (" +
            ", ".join(f"{reason}: {count}" for reason, count in reasons.items()) + ")")


def _theory(s: ResultSet) -> str:
    from .theory import theory_document, theory_summary

    return _section(theory_document(theory_summary(s.table("linear_theory.csv"))), 3)


def _theory_line(s: ResultSet) -> str:
    """One sentence over every binary retrain_last run of the set: how many the
    regularisation path predicts within the tolerance, how many of the others have svc and
    homog together (a class at h = 0), how far the numpy control is from the layer, and which
    runs end nearer svc."""
    from ..measures.linear_theory import TOLERANCE_DEG
    from ..settings.targets import TIE_DEG
    from .text import number
    from .theory import nearer_svc

    table = s.table("linear_theory.csv")
    if table.empty:
        return "The set has no binary retrain_last run."
    final = table[table["final"].astype(bool)]
    separable = final[final["separable"].astype(bool)]
    outside = separable[~separable["within_tolerance"].astype(bool)]
    together = int((outside["svc_homog_angle_deg"] <= TIE_DEG).sum())
    nearer = nearer_svc(separable)
    text = (f"Of {len(final)} binary retrain_last runs, {len(separable)} have separable "
            f"features; the regularisation path predicts the final angle to homog within "
            f"{TOLERANCE_DEG:g}° in {len(separable) - len(outside)} of them")
    if len(outside):
        text += (f", and {together} of the {len(outside)} outside have svc and homog within "
                 f"{TIE_DEG:g}° of each other (a class at h = 0)")
    text += (f". The numpy control is at most {number(table['control_vs_measured_deg'].max(), 2)}° "
             f"from the retrained layer over every kept checkpoint. {len(nearer)} runs end nearer "
             "svc than homog")
    if len(nearer):
        counts = nearer.groupby("dataset", sort=True).size()
        path = int((nearer["reg_angle_svc_deg"] < nearer["reg_angle_homog_deg"]).sum())
        turns = nearer["turn_log10_inverse_loss"].to_numpy(dtype=float)
        turns = turns[np.isfinite(turns)]
        text += (" (" + ", ".join(f"{d} {n}" for d, n in counts.items()) + f"); the "
                 f"regularisation path at the same loss is nearer svc too in {path} of them")
        if turns.size:
            text += (f", and turns to homog between log10(1/L) = {number(turns.min(), 4)} and "
                     f"{number(turns.max(), 4)}")
    return text + "."


def _generalisation(s: ResultSet) -> str:
    from .generalisation import generalisation_document

    return _section(generalisation_document(s.table("generalisation.csv")), 2)


def _collapse(s: ResultSet) -> str:
    from .collapse import collapse_document

    return _section(collapse_document(s.table("collapse.csv")), 2)


#: value name → how it is computed from a result set.
VALUES: dict[str, Callable[[ResultSet], str]] = {
    "runs": _runs, "jobs": _jobs, "seeds": _seeds, "stop_loss": _stop_loss, "wall": _wall,
    "cpu": _cpu, "machine": _machine, "provenance": _provenance, "timing": _timing,
    "parallel": _parallel, "longest_job": _longest_job, "training_share": _training_share,
    "answer": _answer, "closer": _closer, "claims": _claims, "findings": _findings,
    "excluded": _excluded, "theory": _theory, "theory_line": _theory_line,
    "generalisation": _generalisation, "collapse": _collapse,
}


def render(template: str, sets: dict[str, ResultSet]) -> str:
    """``template`` with every placeholder replaced by its value (module docstring)."""
    def value(match: re.Match) -> str:
        name, what = match.group(1), match.group(2)
        if name not in sets:
            raise KeyError(f"placeholder {match.group(0)}: no result set '{name}' "
                           f"(known: {', '.join(sets)})")
        if what not in VALUES:
            raise KeyError(f"placeholder {match.group(0)}: no value '{what}' "
                           f"(known: {', '.join(VALUES)})")
        return VALUES[what](sets[name]).rstrip("\n")

    return PLACEHOLDER.sub(value, template)


def result_sets(root: Path) -> dict[str, ResultSet]:
    """The committed result sets under ``root/docs/results``."""
    folder = Path(root) / "docs" / "results"
    return {name: ResultSet(name, folder / name) for name in RESULT_SETS
            if (folder / name).is_dir()}


def pages(root: Path) -> dict[Path, str]:
    """Every page rendered: its path under ``root`` → its text."""
    root = Path(root)
    sets = result_sets(root)
    return {root / out: render((root / "docs" / "templates" / name).read_text(), sets)
            for name, out in PAGES.items()}


def keep(results: Path, folder: Path) -> list[Path]:
    """Copy a finished run's tables, record and figures (:data:`KEPT`, :data:`KEPT_FIGURES`)
    from ``results`` to a result set ``folder``; return the files written."""
    import shutil

    missing = [f for f in ("provenance.json", "config.yaml", "claims.csv")
               if not (Path(results) / f).exists()]
    if missing:
        raise FileNotFoundError(f"{results}: not a finished run (no {', '.join(missing)})")
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for name in KEPT:
        if (Path(results) / name).exists():
            written.append(Path(shutil.copyfile(Path(results) / name, folder / name)))
    figures = Path(results) / "figures"
    for pattern in KEPT_FIGURES:
        for source in sorted(figures.glob(pattern)):
            target = folder / "figures" / source.relative_to(figures)
            target.parent.mkdir(parents=True, exist_ok=True)
            written.append(Path(shutil.copyfile(source, target)))
    return written
