"""The config schema (``config.schema.yaml`` beside this module, and as
``workflow/schemas/config.schema.yaml`` in the workflow): the one place that says which
keys exist, what values they take and their defaults.

:func:`load_schema` completes it from :mod:`nnboundary.settings.catalog` (the built-in datasets'
and archs' own settings); :func:`defaults` gives a settings block's defaults, which the
workflow (:func:`nnboundary.settings.config.validate_config`), the settings layers
(:mod:`nnboundary.settings.layers`) and every stage's ``--settings``
(:mod:`nnboundary.settings.commandline`) take from here, so that no code repeats them.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from . import catalog

#: Shipped with the package (an installed stage reads its defaults from it), linked from
#: workflow/schemas/ where a Snakemake workflow keeps its schemas.
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"
#: Settings blocks that are definitions of the schema (used in several places of a config); any
#: other block is a top-level section (``svm``, ``metrics``, ``figures``, ``split``).
DEFINED_BLOCKS = {"train": "train_settings", "retrain": "retrain_settings",
                  "resources": "resources"}


@functools.lru_cache(maxsize=4)
def _read(path: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 7x faster where built
    with open(path) as handle:
        return yaml.load(handle, Loader=loader)


def raw_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The schema file as it is (a copy: callers may change it)."""
    return copy.deepcopy(_read(str(path)))


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The config schema: the YAML file, completed from :mod:`nnboundary.settings.catalog`: the
    settings of the built-in datasets and archs (the union of their keys; which key applies to
    which entry is checked after the schema), and one entry per built-in name under
    ``datasets:`` and ``archs:`` (any other name is a user entry)."""
    schema = raw_schema(path)
    definitions = schema["definitions"]
    for table, settings in ((catalog.DATASETS, "dataset_settings"),
                            (catalog.ARCHS, "arch_settings")):
        properties = definitions[settings]["properties"]
        for entry in table.values():
            for key, (_, fragment) in entry.settings.items():
                properties.setdefault(key, fragment)
    for section, table, settings in (("datasets", catalog.DATASETS, "dataset_settings"),
                                     ("archs", catalog.ARCHS, "arch_settings")):
        schema["properties"][section]["properties"] = {
            name: {"$ref": f"#/definitions/{settings}"} for name in table}
    return schema


def block_schema(block: str, schema: dict | None = None) -> dict:
    """The schema of settings block ``block`` (``train``, ``retrain``, ``resources``, ``svm``,
    ``metrics``, ``figures``, ``split``), standing alone: its ``$ref`` resolve against the
    schema's definitions."""
    schema = raw_schema() if schema is None else schema
    if block in DEFINED_BLOCKS:
        fragment = schema["definitions"][DEFINED_BLOCKS[block]]
    elif block in schema["properties"] and "properties" in schema["properties"][block]:
        fragment = schema["properties"][block]
    else:
        allowed = sorted([*DEFINED_BLOCKS, *(k for k, v in schema["properties"].items()
                                              if "properties" in v and k != "grid")])
        raise ValueError(f"no settings block {block!r} in the config schema; allowed: {allowed}")
    return {"definitions": schema["definitions"], **fragment}


def _resolve(schema: dict, reference: str) -> dict:
    node: Any = schema
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


@functools.lru_cache(maxsize=16)
def _defaults(block: str) -> tuple[tuple[str, Any], ...]:
    schema = raw_schema()
    fragment = block_schema(block, schema)
    found = []
    for key, node in fragment["properties"].items():
        while "default" not in node and "$ref" in node:
            node = _resolve(schema, node["$ref"])
        if "default" in node:
            found.append((key, node["default"]))
    return tuple(found)


def defaults(block: str) -> dict[str, Any]:
    """The defaults of settings block ``block`` (:func:`block_schema`): every property's
    ``default``, a ``default`` beside a ``$ref`` before the one it refers to. A fresh copy."""
    return copy.deepcopy(dict(_defaults(block)))


def format_error(error, where: str = "config key") -> str:
    """One jsonschema error as a line naming the key, the value's problem and, for an unknown
    key, the keys allowed there."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the deepest problem (e.g. the bad value inside the list form), not "matches
        # none of the alternatives".
        error = max(error.context, key=lambda e: len(e.absolute_path))
    path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    if error.validator == "additionalProperties" and "properties" in error.schema:
        message += f"; allowed keys here: {', '.join(sorted(error.schema['properties']))}"
    return f"{where} '{path}': {message}"


def problems(instance: dict, schema: dict, where: str = "config key") -> list[str]:
    """Every way ``instance`` breaks ``schema`` (:func:`format_error` lines, sorted)."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [format_error(e, where) for e in sorted(validator.iter_errors(instance), key=str)]
