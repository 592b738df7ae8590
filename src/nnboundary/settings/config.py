"""Reading a config: YAML files layered as Snakemake layers them, validated against the schema
and the checks it cannot express, defaults filled in.

Used by the Snakefile (``workflow/rules/common.smk``) before any job is scheduled and by the
command-line tools, so both read a config in exactly one way. Imports neither torch nor
Snakemake: parsing the workflow stays fast.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..errors import ConfigError
from . import checks, schema


def _fill_defaults(instance: dict, schema_: dict) -> None:
    """Fill ``default`` values of the schema's top-level sections (one level of nesting)."""
    for key, sub in schema_.get("properties", {}).items():
        if "default" in sub and key not in instance:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict):
            for inner, inner_schema in sub.get("properties", {}).items():
                if "default" in inner_schema and inner not in instance[key]:
                    instance[key][inner] = copy.deepcopy(inner_schema["default"])


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def validate_config(config: dict, schema_path: str | Path = schema.SCHEMA_PATH) -> dict:
    """Check ``config`` against the schema and the rules the schema cannot express
    (:mod:`nnboundary.settings.checks`).

    Returns a copy with defaults filled in. Raises :class:`nnboundary.errors.ConfigError`
    naming every bad value and what is allowed, before any work is done.
    """
    full = schema.load_schema(schema_path)
    _raise_if(checks.entry_problems(config))
    _raise_if(schema.problems(config, full))
    config = copy.deepcopy(config)
    _fill_defaults(config, full)
    _raise_if(checks.semantic_problems(config))
    _raise_if(checks.source_problems(config))
    return config


def layer_configs(base: dict, update: dict) -> dict:
    """``update`` applied on top of ``base`` as Snakemake applies a ``--configfile`` on top of the
    workflow's ``configfile:``: mappings are merged key by key, recursively; any other value
    (a list included) replaces the one below it."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = layer_configs(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(*paths: str | Path) -> dict:
    """Read YAML config files, each layered on the ones before it (:func:`layer_configs`), and
    validate the result (for the command-line tools and tests). ``load_config("config.yaml",
    "configs/regimes.yaml")`` is the config ``snakemake --configfile configs/regimes.yaml``
    runs."""
    import yaml

    config: dict = {}
    for path in paths:
        with open(path) as handle:
            config = layer_configs(config, yaml.safe_load(handle) or {})
    return validate_config(config)
