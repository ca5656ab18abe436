"""The run directory: configuration, history, server view, checkpoints, model and attacks."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import RecordDict

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.history import History
from fedpriv.wire import payload_bytes, payload_from_bytes

# Every file name of a run directory; nothing else in fedpriv spells them.
CONFIG = "config.json"
HISTORY = "history.json"
MODEL = "model.pt"
SERVER_VIEW = "server_view"
CHECKPOINTS = "checkpoints"
KEYS = "keys"
ATTACKS = "attacks"
REUSE = "reuse.json"
AUDIT = "dp-audit.json"
RUN_MARKERS = (CONFIG, HISTORY, MODEL, SERVER_VIEW, CHECKPOINTS)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(path.read_text(encoding="utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def coalition_dir(run_dir: Path, colluders: int) -> Path:
    """Where a comparison keeps a coalition of ``colluders`` clients' attacks on a run."""
    return run_dir.parent / f"{run_dir.name}.coalition-{colluders}"


def undefended_dir(run_dir: Path) -> Path:
    """Where a comparison keeps the outsider's attacks on a run's model without its defense."""
    return run_dir.parent / f"{run_dir.name}.undefended"


# Written where the key holder refused to release a run's final checkpoint (a malicious
# server's run whose last aggregate does not verify); no model.pt is written then.
RELEASE_REFUSED = "release-refused.json"


class RunDirectory:
    """Reads and writes one run directory (``docs/reference/run-directory.md``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- creation ---------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """Whether the directory already holds (part of) a run."""
        return self.path.is_dir() and any((self.path / m).exists() for m in RUN_MARKERS)

    def create(self) -> None:
        """Create an empty run directory; refuse one that holds another run."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output path {self.path} exists and is not a directory")
        if self.holds_run():
            raise ConfigError(
                f"output directory {self.path} already holds a run; choose another --out "
                "(out-dir; FEDPRIV_RUN_NAME under docker compose) or delete it"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    # -- configuration and history ----------------------------------------------------------
    @property
    def key_dir(self) -> Path:
        """Where a simulation provisions its keys."""
        return self.path / KEYS

    def write_config(self, config: RunConfig) -> None:
        """Write the resolved configuration."""
        write_json(self.path / CONFIG, config.to_flower())

    def read_config(self, changes: Mapping[str, Any] | None = None) -> RunConfig:
        """Read the resolved configuration, with ``changes`` (run-config keys) applied.

        The changes apply before the configuration is checked: a stored name that does not
        load here (an app's model module) can be replaced.
        """
        try:
            data = read_json(self.path / CONFIG)
        except FileNotFoundError:
            raise ConfigError(f"{self.path} is not a run directory (no {CONFIG})") from None
        return RunConfig.from_flower({**data, **(changes or {})})

    def write_history(self, history: History) -> None:
        """Write the round history (atomically, after every round)."""
        write_json(self.path / HISTORY, history.to_json())

    def read_history(self) -> History:
        """Read the round history."""
        return History.from_json(read_json(self.path / HISTORY))

    def has_history(self) -> bool:
        """Whether a history was written."""
        return (self.path / HISTORY).is_file()

    # -- what the server saw ----------------------------------------------------------------
    def view_dir(self, server_round: int) -> Path:
        """Folder of round ``server_round``'s server view."""
        return self.path / SERVER_VIEW / f"round-{server_round:03d}"

    def has_server_view(self) -> bool:
        """Whether the run recorded what its server saw."""
        return (self.path / SERVER_VIEW).is_dir()

    def record_view(self, server_round: int, name: str, data: bytes) -> None:
        """Store a payload (its exact bytes) the server sent or received."""
        folder = self.view_dir(server_round)
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / f"{name}.pb", data)

    def view_files(self, server_round: int, prefix: str) -> dict[str, Path]:
        """Server-view payloads of a round whose name starts with ``prefix``, by name."""
        folder = self.view_dir(server_round)
        return {p.stem: p for p in sorted(folder.glob(f"{prefix}*.pb"))}

    def read_sent(self, server_round: int) -> RecordDict:
        """The training payload the server broadcast at the start of ``server_round``."""
        return self.read_payload(self.view_dir(server_round) / "train-sent.pb")

    @staticmethod
    def read_payload(path: Path) -> RecordDict:
        """Parse a stored payload."""
        return payload_from_bytes(path.read_bytes())

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint_path(self, server_round: int) -> Path:
        """Path of the server's state after round ``server_round``."""
        return self.path / CHECKPOINTS / f"round-{server_round:03d}.pb"

    def write_checkpoint(self, server_round: int, state: RecordDict) -> None:
        """Write the server's global state after a round (atomically)."""
        path = self.checkpoint_path(server_round)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, payload_bytes(state))

    def read_checkpoint(self, server_round: int) -> RecordDict:
        """Read the server's global state after round ``server_round``."""
        return payload_from_bytes(self.checkpoint_path(server_round).read_bytes())

    def checkpoint_rounds(self) -> list[int]:
        """Rounds that have a checkpoint, ascending."""
        folder = self.path / CHECKPOINTS
        return sorted(int(p.stem.split("-")[1]) for p in folder.glob("round-*.pb"))

    # -- the released model -----------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """Where the released model lives."""
        return self.path / MODEL

    def has_model(self) -> bool:
        """Whether a model was released."""
        return self.model_path.is_file()

    def write_model(self, data: bytes) -> None:
        """Write the released global model (``fedpriv.models.state_to_bytes``), atomically."""
        write_bytes(self.model_path, data)

    # -- attacks ----------------------------------------------------------------------------
    @property
    def audit_path(self) -> Path:
        """The one-run DP audit's result (``fedpriv audit``)."""
        return self.path / AUDIT

    def attack_dir(self, threat: str) -> Path:
        """Folder of one threat's attack results and figures."""
        return self.path / ATTACKS / threat

    def attack_file(self, threat: str, attack: str, suffix: str = ".json") -> Path:
        """The file of one attack's result (``.json``) or figure (``.png``, ``-images.npz``)."""
        return self.attack_dir(threat) / f"{attack}{suffix}"

    def attack_threats(self) -> list[str]:
        """Threats with a results folder."""
        return sorted(p.name for p in (self.path / ATTACKS).glob("*") if p.is_dir())

    # -- reuse ------------------------------------------------------------------------------
    def reuse_key(self, scope: str) -> Any:
        """What the results of ``scope`` (``run``, ``attacks/<threat>``) were made with."""
        path = self.path / REUSE
        return read_json(path).get(scope) if path.is_file() else None

    def write_reuse_key(self, scope: str, key: Any) -> None:
        """Record what the results of ``scope`` were made with."""
        path = self.path / REUSE
        keys = read_json(path) if path.is_file() else {}
        write_json(path, {**keys, scope: key})

    def forget_reuse_key(self, scope: str) -> None:
        """Forget ``scope``'s key (its results are being made again)."""
        path = self.path / REUSE
        if path.is_file():
            keys = read_json(path)
            keys.pop(scope, None)
            write_json(path, keys)
