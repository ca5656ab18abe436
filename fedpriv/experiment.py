"""Experiment files: TOML with a ``[run]`` table (and, for comparisons, attacks and arms)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.registry import unknown_name, unknown_names

# The tables an experiment file may hold: the federation, the attack budgets of a comparison,
# and a comparison's arms (each a table of run-config overrides).
TABLES = ("run", "attacks", "arms", "malicious-server", "comparison", "sweep")


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{what} {path} is not valid TOML: {err}") from err


def check_keys(where: str, table: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse the keys of ``table`` that are not in ``valid``, naming each and its closest."""
    valid = list(valid)
    unknown = [key for key in table if key not in valid]
    if unknown:
        raise unknown_names(f"key in {where}", unknown, valid)


def read_experiment(path: str | Path, what: str = "experiment file") -> dict[str, Any]:
    """Read an experiment file and refuse unknown tables (run keys are checked by RunConfig).

    A file without a ``[run]`` table may hold run-config keys at its top level.
    """
    data = read_toml(path, what)
    for name, value in data.items():
        if isinstance(value, dict) and name not in TABLES:
            raise unknown_name(f"table in {path}", f"[{name}]", [f"[{t}]" for t in TABLES])
    return data


def run_table(data: Mapping[str, Any]) -> dict[str, Any]:
    """The run-config keys of an experiment: its ``[run]`` table, or its top-level keys."""
    if "run" in data:
        run = data["run"]
        if not isinstance(run, dict):
            raise ConfigError("[run] must be a table of run-config keys")
        return dict(run)
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


def load_run_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run configuration of an experiment file, with ``overrides`` (run-config keys)."""
    table = run_table(read_experiment(path))
    check_keys(f"[run] of {path}", table, RunConfig.keys())
    return RunConfig.from_flower({**table, **(overrides or {})})
