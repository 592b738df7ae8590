"""The licence and the citation file: present, named in the package metadata, and CITATION.cff
valid against the Citation File Format schema (``cffconvert --validate``)."""

from __future__ import annotations

import subprocess
import tomllib
import venv

import pytest
import yaml

from conftest import REPO

CFFCONVERT = "cffconvert==2.0.0"


def test_the_licence_is_mit_and_named_in_pyproject():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


def test_the_citation_names_the_software_the_study_and_the_theory():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["type"] == "software" and cff["license"] == "MIT"
    titles = {ref["title"]: ref for ref in cff["references"]}
    study = titles["On the decision boundary of deep neural networks"]
    assert [a["family-names"] for a in study["authors"]] == ["Li", "Ding", "Gao"]
    assert "1808.05385" in study["url"]
    theory = titles["The implicit bias of gradient descent on separable data"]
    assert theory["journal"] == "Journal of Machine Learning Research" and theory["year"] == 2018
    assert theory["authors"][0]["family-names"] == "Soudry"


@pytest.fixture(scope="module")
def cffconvert(tmp_path_factory):
    """cffconvert in a virtual environment of its own: it pins jsonschema < 4, which the
    workflow's snakemake cannot share."""
    home = tmp_path_factory.mktemp("cffconvert")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", CFFCONVERT],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.skip(f"cannot install {CFFCONVERT} (no package index?): {install.stderr[-500:]}")
    return home / "bin" / "cffconvert"


def test_citation_cff_passes_cffconvert_validate(cffconvert, tmp_path):
    result = subprocess.run([str(cffconvert), "--validate", "-i", str(REPO / "CITATION.cff")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator really checks: a file without the required message fails.
    broken = tmp_path / "CITATION.cff"
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    del cff["message"]
    broken.write_text(yaml.safe_dump(cff))
    bad = subprocess.run([str(cffconvert), "--validate", "-i", str(broken)], capture_output=True,
                         text=True)
    assert bad.returncode != 0
