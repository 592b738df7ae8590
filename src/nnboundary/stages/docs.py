"""``nnboundary docs``: README.md and docs/results.md from the committed result sets
(:mod:`nnboundary.reporting.pages`), and the copy of a finished run into a result set.

- ``nnboundary docs render [--root .] [--check]``: write both pages from their templates
  (``docs/templates/``) and the tables under ``docs/results/``; ``--check`` writes nothing and
  exits 1, naming the page, where a committed page differs from its rendering.
- ``nnboundary docs keep RESULTS NAME [--root .]``: copy a finished run's tables, config record,
  provenance and figures from ``RESULTS`` (a ``results/`` folder) to ``docs/results/NAME``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..formats.atomic import write_text
from ..reporting.pages import RESULT_SETS, keep, pages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary docs", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write README.md and docs/results.md")
    render.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    render.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 where a committed page differs")
    kept = commands.add_parser("keep", help="copy a finished run into docs/results/NAME")
    kept.add_argument("results", type=Path, help="the run's results/ folder")
    kept.add_argument("name", help=f"the result set: one of {', '.join(RESULT_SETS)}")
    kept.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args(argv)
    if args.command == "keep":
        if args.name not in RESULT_SETS:
            raise InputError(f"result set {args.name!r} is not one of {', '.join(RESULT_SETS)}")
        written = keep(args.results, args.root / "docs" / "results" / args.name)
        print(f"docs keep: {len(written)} files to docs/results/{args.name}", file=sys.stderr)
        return 0
    stale = []
    for path, text in pages(args.root).items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            write_text(path, text)
            print(f"docs render: {path}", file=sys.stderr)
    if stale:
        print("docs render --check: differs from its rendering (run `python -m nnboundary docs "
              f"render`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0
