"""The run directory: configuration, history, server view, checkpoints and the released model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import RecordDict

from fedpriv.errors import ConfigError
from fedpriv.wire import payload_bytes, payload_from_bytes

CONFIG = "config.json"
HISTORY = "history.json"
MODEL = "model.pt"
SERVER_VIEW = "server_view"
CHECKPOINTS = "checkpoints"
KEYS = "keys"
RUN_MARKERS = (CONFIG, HISTORY, MODEL, SERVER_VIEW, CHECKPOINTS)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RunDirectory:
    """Reads and writes one run directory (see the README for its format)."""

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
                "or delete it"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    # -- configuration and history ----------------------------------------------------------
    @property
    def key_dir(self) -> Path:
        """Where a simulation provisions its keys."""
        return self.path / KEYS

    def write_config(self, config: dict[str, Any]) -> None:
        """Write the resolved configuration."""
        write_json(self.path / CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        """Read the resolved configuration."""
        return json.loads((self.path / CONFIG).read_text(encoding="utf-8"))

    def write_history(self, history: dict[str, Any]) -> None:
        """Write the round history (atomically, after every round)."""
        write_json(self.path / HISTORY, history)

    def read_history(self) -> dict[str, Any]:
        """Read the round history."""
        return json.loads((self.path / HISTORY).read_text(encoding="utf-8"))

    # -- what the server saw ----------------------------------------------------------------
    def view_dir(self, server_round: int) -> Path:
        """Folder of round ``server_round``'s server view."""
        path = self.path / SERVER_VIEW / f"round-{server_round:03d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record_view(self, server_round: int, name: str, content: RecordDict) -> int:
        """Store a payload the server sent or received; return its size in bytes."""
        data = payload_bytes(content)
        write_bytes(self.view_dir(server_round) / f"{name}.pb", data)
        return len(data)

    def view_files(self, server_round: int, prefix: str) -> dict[str, Path]:
        """Server-view payloads of a round whose name starts with ``prefix``, by name."""
        folder = self.path / SERVER_VIEW / f"round-{server_round:03d}"
        return {p.stem: p for p in sorted(folder.glob(f"{prefix}*.pb"))}

    def read_sent(self, server_round: int) -> RecordDict:
        """The training payload the server broadcast at the start of ``server_round``."""
        return self.read_payload(self.view_files(server_round, "train-sent")["train-sent"])

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
    def write_model(self, state: dict[str, np.ndarray]) -> None:
        """Write the released global model as a torch state_dict."""
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
        tmp = self.path / (MODEL + ".tmp")
        torch.save(tensors, tmp)
        os.replace(tmp, self.path / MODEL)

    def read_model(self) -> dict[str, torch.Tensor]:
        """Read the released global model's state_dict."""
        return torch.load(self.path / MODEL, weights_only=True)
