"""Stage ``config`` (``workflow/rules/config.smk``, rules ``config_record`` and ``provenance``):
check a config file, record the validated config, defaults filled in, as YAML
(``results/config.yaml``), or write what made a result set (``results/provenance.json``,
:mod:`nnboundary.reporting.provenance`)."""

from __future__ import annotations

import argparse
import json
import sys

from ..formats.atomic import write_text
from ..settings.config import load_config, validate_config
from ..settings.grid import grid_size
from ..settings.space import space_report


def main(argv: list[str] | None = None) -> int:
    """``nnboundary config``: check a config file, or record the validated config as YAML."""
    import yaml

    parser = argparse.ArgumentParser(prog="nnboundary config", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--check", metavar="FILE", nargs="+",
                        help="YAML config files to validate, each applied on top of the ones "
                             "before it as snakemake applies --configfile on config.yaml, e.g. "
                             "--check config.yaml configs/regimes.yaml")
    source.add_argument("--config-json", help="a config as a JSON object (the workflow's)")
    source.add_argument("--provenance", metavar="OUT",
                        help="write the provenance record of a result set (JSON) from --record,"
                             " --workflow and --benchmarks")
    parser.add_argument("--output", help="write the validated config, defaults filled in (YAML)")
    parser.add_argument("--record", metavar="YAML",
                        help="with --provenance: the run's config record (results/config.yaml)")
    parser.add_argument("--workflow", metavar="DIR", default=".",
                        help="with --provenance: the workflow's checkout (its commit is read)")
    parser.add_argument("--benchmarks", metavar="TSV", nargs="*", default=[],
                        help="with --provenance: the Snakemake benchmark files of the run's jobs")
    parser.add_argument("--command", default=None,
                        help="with --provenance: the command that ran the workflow (default: "
                             "$NNBOUNDARY_COMMAND, which the workflow sets)")
    args = parser.parse_args(argv)
    if args.provenance:
        return _provenance(parser, args)
    config = load_config(*args.check) if args.check else validate_config(
        json.loads(args.config_json))
    print(f"valid: {grid_size(config)}", file=sys.stderr)
    if args.check:
        report, short = space_report(config)
        print(f"{'warning' if short else 'space'}: {report}", file=sys.stderr)
    if args.output:
        write_text(args.output, yaml.safe_dump(config, sort_keys=False))
    return 0


def _provenance(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import os

    import yaml

    from ..reporting.provenance import provenance

    if not args.record:
        parser.error("--provenance needs --record (the run's results/config.yaml)")
    with open(args.record) as handle:
        config = yaml.safe_load(handle)
    command = args.command or os.environ.get("NNBOUNDARY_COMMAND") or "unknown"
    record = provenance(config, command, args.workflow, args.benchmarks)
    write_text(args.provenance, json.dumps(record, indent=1, default=str) + "\n")
    print(f"provenance: commit {record['commit']} clean {record['clean']}, "
          f"{record['jobs']} jobs, {record['wall_seconds']} s wall", file=sys.stderr)
    return 0
