"""Command-line flags generated from the run configuration's fields, and their resolution."""

from __future__ import annotations

import argparse
import time
from dataclasses import Field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig, choices_of
from fedpriv.errors import ConfigError
from fedpriv.experiment import load_run_config

# Keys with a flag of their own: the output folder and resuming.
SPECIAL_KEYS = ("out_dir", "resume")


def flag_name(f: Field[Any]) -> str:
    """The flag of a run-config field: its short name where it has one, else its key."""
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def federation_fields() -> list[Field[Any]]:
    """The run-config fields that are flags of `run` and `deploy local`."""
    return [f for f in fields(RunConfig) if f.name not in SPECIAL_KEYS]


def describe(f: Field[Any]) -> str:
    """Help text of a field: what it is, its choices and its default."""
    text = f.metadata.get("help", "")
    choices = choices_of(f)
    if choices:
        text += f"; one of {', '.join(choices)}"
    default = f.default.value if isinstance(f.default, StrEnum) else f.default
    return f"{text} (run-config key {f.name.replace('_', '-')}; default: {default!r})"


def add_federation_flags(parser: argparse.ArgumentParser) -> None:
    """Every federation flag (one per run-config key) and ``--config``."""
    group = parser.add_argument_group(
        "federation", "each flag sets one run-config key and overrides --config"
    )
    group.add_argument("--config", type=Path, help="experiment TOML file (its [run] table)")
    for f in federation_fields():
        default_type = type(f.default)
        kind: Any = str if issubclass(default_type, StrEnum) else default_type
        if kind is bool:
            group.add_argument(
                flag_name(f), dest=f.name, action=argparse.BooleanOptionalAction, help=describe(f)
            )
        else:
            group.add_argument(flag_name(f), dest=f.name, type=kind, help=describe(f))


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Run-config keys set by flags (kebab-case), in declaration order."""
    return {
        f.name.replace("_", "-"): getattr(args, f.name)
        for f in federation_fields()
        if getattr(args, f.name, None) is not None
    }


def resolve_run_config(args: argparse.Namespace) -> RunConfig:
    """Merge an experiment file and command-line flags into a validated ``RunConfig``.

    Raises
    ------
    ConfigError
        For a bad value, and for fewer clients than a round needs (``min-available-clients``).

    """
    overrides = given_flags(args)
    if args.config is not None:
        config = load_run_config(args.config, overrides)
    else:
        config = RunConfig.from_flower(overrides)
    if config.num_clients < config.min_available_clients:
        raise ConfigError(
            f"num-clients {config.num_clients} is below min-available-clients "
            f"{config.min_available_clients}: every round would be skipped; use --clients "
            f">= {config.min_available_clients} or --min-available-clients {config.num_clients}"
        )
    out = args.out or Path("runs") / f"{config.aggregation}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config.replace(out_dir=str(Path(out).resolve()))
