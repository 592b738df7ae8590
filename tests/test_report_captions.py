"""Every caption and the workflow description of the report are valid reStructuredText: a
stray '|' (as in |bias gap|) is a substitution reference, and Snakemake would print an error
and show the caption broken."""

from __future__ import annotations

import io

import docutils.core
import pytest
from conftest import REPO

RST = sorted((REPO / "workflow" / "report").glob("*.rst"))


@pytest.mark.parametrize("path", RST, ids=[p.name for p in RST])
def test_caption_renders_without_docutils_messages(path):
    messages = io.StringIO()
    docutils.core.publish_parts(path.read_text(), writer="html",
                                settings_overrides={"warning_stream": messages,
                                                    "report_level": 2, "halt_level": 5})
    assert messages.getvalue() == "", messages.getvalue()


def test_every_caption_file_is_used_by_a_rule():
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    snakefile = (REPO / "Snakefile").read_text()
    for path in RST:
        assert f"report/{path.name}" in rules + snakefile, path.name
