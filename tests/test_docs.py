"""The documentation: README.md and docs/results.md equal their rendering from the committed
result sets, the templates hold no number of their own, every committed result set has the
provenance the workflow wrote, and no tracked file speaks of how the project was built."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO
from nnboundary.reporting import pages

#: Words about how the project was made rather than about the software (case-sensitive:
#: lowercase prose; ``scope="session"`` is pytest's and ``--quiet`` Snakemake's).
DEVELOPMENT_WORDS = [
    r"(?<!scope=\")\bsessions?\b(?!\")", r"\blent\b", r"\blending\b", r"\btenants?\b",
    r"development machine", r"\bbusy\b", r"\bbusier\b", r"(?<!-)\bquiet(er)?\b",
    r"\bthis machine\b", r"\bmachine here\b", r"\b(measured|timed|installed|run|ran) here\b",
]


def _tracked_text_files():
    names = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True,
                           text=True, check=True).stdout.split()
    for name in names:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".parquet", ".pt", ".npz", ".gz", ".zip"}:
            continue
        try:
            yield name, path.read_text()
        except UnicodeDecodeError:
            continue


def test_no_tracked_file_speaks_of_how_the_project_was_built():
    found = []
    for name, text in _tracked_text_files():
        if name == "tests/test_docs.py":
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for pattern in DEVELOPMENT_WORDS:
                if re.search(pattern, line):
                    found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("line, bad", [
    ("measured in one session on 2 cores", True), ("no GPU was lent", True),
    ("other tenants", True), ("the 2-core development machine", True), ("a busy day", True),
    ("timed here", True), ('@pytest.fixture(scope="session")', False),
    ('snakemake("--quiet")', False), ("a machine with more cores", False),
])
def test_the_development_words_are_caught(line, bad):
    assert any(re.search(p, line) for p in DEVELOPMENT_WORDS) == bad


def test_the_pages_equal_their_rendering():
    """README.md and docs/results.md are what `python -m nnboundary docs render` writes."""
    stale = [str(path.relative_to(REPO)) for path, text in pages.pages(REPO).items()
             if path.read_text() != text]
    assert not stale, f"run `python -m nnboundary docs render`: {stale} differ from the rendering"


def test_the_check_command_fails_on_a_stale_page(tmp_path):
    import shutil

    for name in ("docs/templates", "docs/results"):
        shutil.copytree(REPO / name, tmp_path / name)
    command = [sys.executable, "-m", "nnboundary", "docs", "render", "--root", str(tmp_path)]
    assert subprocess.run(command + ["--check"], capture_output=True).returncode == 1
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert subprocess.run(command + ["--check"], capture_output=True).returncode == 0
    (tmp_path / "README.md").write_text((tmp_path / "README.md").read_text() + "\nedited\n")
    result = subprocess.run(command + ["--check"], capture_output=True, text=True)
    assert result.returncode == 1 and "README.md" in result.stderr


#: Numbers that the templates may hold in prose: citations, versions, names and thresholds
#: that are part of a definition, not results.
ALLOWED_NUMBERS = re.compile(
    r"1808\.05385|JMLR 2018|COLT\s+2020|Python 3\.11|p < 0\.05|h = 0|K − 1|\[h, 1\]|"
    r"1/log\(1/L\)|log10\(1/L\)|1/t\b|MNIST 4 vs 9|MNIST 4/9|digits 0/1|float64|\b2-D\b|"
    r"→ 0|above 0|CIFAR-10|\{\{[^}]*\}\}")


def _prose(template: str) -> str:
    text = re.sub(r"```.*?```", "", template, flags=re.S)        # code blocks
    text = re.sub(r"`[^`]*`", "", text)                            # code spans
    text = re.sub(r"\]\([^)]*\)", "]", text)                       # link targets
    return ALLOWED_NUMBERS.sub("", text)


@pytest.mark.parametrize("name", ["README.md", "results.md"])
def test_the_templates_hold_no_number_of_their_own(name):
    """Every number of a rendered page comes from a placeholder, that is from a table."""
    prose = _prose((REPO / "docs" / "templates" / name).read_text())
    numbers = [line for line in prose.splitlines() if re.search(r"\d", line)]
    assert not numbers, "\n".join(numbers)


def test_the_readme_answers_on_its_first_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:40])
    assert "| claim | holds (cells) |" in first_screen and "![" in "\n".join(lines[:50])
    assert "snakemake --report" in "\n".join(lines)


def test_every_result_set_has_its_provenance_from_an_ancestor_of_head():
    sets = pages.result_sets(REPO)
    assert len(sets) >= 5, sorted(sets)
    for name, result_set in sets.items():
        record = json.loads((result_set.folder / "provenance.json").read_text())
        assert record["clean"] is True, name
        assert record["config"] == result_set.config, name
        assert record["cpu"] and record["cores"] and record["wall_seconds"] > 0, name
        commit = record["commit"]
        present = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", commit],
                                 capture_output=True).returncode == 0
        if not present:  # a shallow clone: the history is not there to check
            continue
        ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor",
                                   commit, "HEAD"], capture_output=True)
        assert ancestor.returncode == 0, f"{name}: {commit} is not an ancestor of HEAD"


def test_placeholders_name_known_sets_and_values(tmp_path):
    sets = pages.result_sets(REPO)
    with pytest.raises(KeyError, match="no result set 'nosuch'"):
        pages.render("{{ nosuch.runs }}", sets)
    with pytest.raises(KeyError, match="no value 'nosuch'"):
        pages.render("{{ default.nosuch }}", sets)
    assert pages.render("{{ default.runs }} runs", sets) == f"{len(sets['default'].runs)} runs"


@pytest.mark.parametrize("seconds, text", [(12.4, "12 s"), (298, "4 min 58 s"),
                                            (3600 + 125, "1 h 2 min"), (60, "1 min 0 s")])
def test_duration(seconds, text):
    assert pages.duration(seconds) == text


def test_keep_copies_a_finished_run_and_refuses_an_unfinished_one(tmp_path):
    results = tmp_path / "results"
    (results / "figures" / "theory" / "blobs" / "mlp").mkdir(parents=True)
    for name in ("provenance.json", "config.yaml", "claims.csv", "findings.csv"):
        (results / name).write_text(name)
    (results / "figures" / "overview.png").write_bytes(b"png")
    (results / "figures" / "theory" / "blobs" / "mlp" / "base.png").write_bytes(b"png")
    (results / "metrics.parquet").write_bytes(b"not kept")
    written = pages.keep(results, tmp_path / "kept")
    names = sorted(str(p.relative_to(tmp_path / "kept")) for p in written)
    assert names == ["claims.csv", "config.yaml", "figures/overview.png",
                     "figures/theory/blobs/mlp/base.png", "findings.csv", "provenance.json"]
    (results / "provenance.json").unlink()
    with pytest.raises(FileNotFoundError, match="provenance.json"):
        pages.keep(results, tmp_path / "again")
