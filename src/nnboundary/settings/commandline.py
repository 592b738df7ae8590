"""What a stage reads from its command line: one value per run of a job's per-run arguments,
and its ``--settings`` JSON object, checked against the schema with the schema's defaults.

Every stage reports a bad ``--settings`` value the same way: a
:class:`nnboundary.errors.ConfigError` naming the key, the value's problem and what is allowed,
which the command line (:mod:`nnboundary.cli`) prints as ``nnboundary <stage>: error: ...``.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError
from . import schema


def per_run(parser, args, names, shared=()) -> list[tuple]:
    """The runs of one stage job: the stage's per-run arguments (``nargs="+"``), one value per
    run, zipped into one tuple per run in the order of ``names``. A job of a seed block covers
    several runs with one start of the interpreter (``grid.seeds_per_job``). An argument named
    in ``shared`` may also be given once for every run (e.g. a dataset file the seeds share);
    any other length mismatch is a usage error naming the arguments."""
    values = {name: getattr(args, name) for name in names}
    count = max(len(v) for v in values.values())
    for name, value in values.items():
        if name in shared and len(value) == 1:
            values[name] = value * count
        elif len(value) != count:
            flags = ", ".join(f"--{n.replace('_', '-')} ({len(v)})" for n, v in values.items())
            parser.error(f"give one value per run to each of {flags}")
    return list(zip(*(values[name] for name in names)))


def add_per_run(parser, *arguments: tuple[str, str]) -> None:
    """Add required per-run path arguments (:func:`per_run`): each (name, what) becomes
    ``--name PATH [PATH ...]``, "<what>, one per run"."""
    from pathlib import Path

    for name, what in arguments:
        parser.add_argument(f"--{name}", required=True, type=Path, nargs="+",
                            help=f"{what}, one per run")


def to_json(settings: dict[str, Any]) -> str:
    """Canonical JSON of a settings block (sorted keys), as passed to a stage's ``--settings``."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def parse_settings(text: str | None, defaults: dict[str, Any] | None = None,
                   allowed=None) -> dict[str, Any]:
    """Parse a stage's ``--settings`` JSON object; an empty one means defaults.

    With ``defaults``, the result is the defaults updated by the given keys, and a key that is
    not among ``allowed`` (default: the defaults' keys) is refused with the list of allowed
    keys.
    """
    value: Any = {}
    if text:
        try:
            value = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"--settings is not valid JSON ({err}): {text!r}") from err
        if not isinstance(value, dict):
            raise ConfigError(f"--settings must be a JSON object, got {text!r}")
    if defaults is None:
        return value
    allowed = set(defaults if allowed is None else allowed)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"--settings has unknown keys {unknown}; allowed: {sorted(allowed)}")
    return {**defaults, **value}


def block_settings(text: str | None, block: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stage's ``--settings`` for settings block ``block`` of the schema (``train``,
    ``retrain``, ``svm``, ``metrics``, ``figures``): its keys must be the block's (or those of
    ``extra``, a stage's own keys with their defaults), every value must satisfy the schema,
    and a key not given takes the schema's default."""
    fragment = schema.block_schema(block)
    extra = extra or {}
    settings = parse_settings(text, {**schema.defaults(block), **extra},
                              allowed=[*fragment["properties"], *extra])
    own = {k: v for k, v in settings.items() if k in fragment["properties"]}
    found = schema.problems(own, fragment, where="--settings key")
    if found:
        raise ConfigError("invalid --settings:\n  - " + "\n  - ".join(found))
    return settings


def add_network_inputs(parser, checkpoints_help: str) -> None:
    """The inputs of a stage that reads trained networks: ``--checkpoints`` and ``--data``, one
    per run (one ``--data`` may serve every run)."""
    parser.add_argument("--checkpoints", required=True, nargs="+", help=checkpoints_help)
    parser.add_argument("--data", required=True, nargs="+",
                        help="prepared dataset (.npz): one per run, or one for all")


def add_training_outputs(parser, checkpoint_flag: str) -> None:
    """The arguments every training stage shares: threads and its two outputs, one per run."""
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(checkpoint_flag, required=True, nargs="+",
                        help="checkpoint file to write (.pt), one per run")
    parser.add_argument("--history", required=True, nargs="+",
                        help="per-epoch table to write (.tsv), one per run")
