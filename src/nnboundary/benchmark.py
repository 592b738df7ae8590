"""``nnboundary benchmark <what>``: speed benchmarks that print numbers (never timed tests).

- ``svm``: seconds per SVM fit on 60,000 2-D points, separable and overlapping, every target
  and scheme (goal: under 1 s per binary fit).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnboundary benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["svm"])
    parser.add_argument("--n", type=int, default=60000, help="points per data set")
    args = parser.parse_args(argv)
    if args.what == "svm":
        from .svm import benchmark

        benchmark(n=args.n)
    return 0
