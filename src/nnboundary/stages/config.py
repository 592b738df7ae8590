"""Stage ``config`` (``workflow/rules/config.smk``, rule ``config_record``): check a config file,
or record the validated config, defaults filled in, as YAML (``results/config.yaml``)."""

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
    parser.add_argument("--output", help="write the validated config, defaults filled in (YAML)")
    args = parser.parse_args(argv)
    config = load_config(*args.check) if args.check else validate_config(
        json.loads(args.config_json))
    print(f"valid: {grid_size(config)}", file=sys.stderr)
    if args.check:
        report, short = space_report(config)
        print(f"{'warning' if short else 'space'}: {report}", file=sys.stderr)
    if args.output:
        write_text(args.output, yaml.safe_dump(config, sort_keys=False))
    return 0
