"""Shared fixtures: an offline Flower environment and federations reused across tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedpriv.config import RunConfig

# One full-batch SGD step per round (FedSGD): float32 training cannot amplify the rounding
# differences between the plaintext and ckks arms into a different trajectory, which many
# mini-batch steps occasionally do (README, "How exact is ckks?").
EQUIVALENCE = {"learning_rate": 0.5, "momentum": 0.0, "local_epochs": 1, "batch_size": 512}


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("flwr_home")
    os.environ["FLWR_HOME"] = str(home)
    from fedpriv.env import apply_offline_env

    apply_offline_env()


@pytest.fixture(scope="session")
def key_sets(tmp_path_factory: pytest.TempPathFactory):
    """Key directories by preset name, provisioned once per session on first use."""
    from fedpriv.crypto.keys import provision_keys

    made: dict[str, Path] = {}

    def key_set(preset: str) -> Path:
        if preset not in made:
            made[preset] = tmp_path_factory.mktemp(f"keys-{preset}")
            provision_keys(made[preset], preset)
        return made[preset]

    return key_set


@pytest.fixture(scope="session")
def key_dir(key_sets) -> Path:
    """A key set of the default preset (client context 0600, parameters-only server context)."""
    from fedpriv.crypto.presets import DEFAULT_PRESET

    return key_sets(DEFAULT_PRESET)


@pytest.fixture
def task_identity() -> None:
    """Let tests build Flower Messages outside a running app."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = 0


def _run(tmp_path_factory: pytest.TempPathFactory, name: str, **changes: object) -> Path:
    from fedpriv.simulation import run_simulation

    out = tmp_path_factory.mktemp("runs") / name
    config = RunConfig(num_clients=5, num_server_rounds=5, **changes)  # type: ignore[arg-type]
    return run_simulation(config.replace(out_dir=str(out)))


@pytest.fixture(scope="session")
def plaintext_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-client, 5-round plaintext federation on digits."""
    return _run(tmp_path_factory, "plaintext", aggregation="plaintext", **EQUIVALENCE)


@pytest.fixture(scope="session")
def ckks_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same federation under ckks."""
    return _run(tmp_path_factory, "ckks", aggregation="ckks", **EQUIVALENCE)


@pytest.fixture(scope="session")
def run_twice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second plaintext federation with the same seed as ``plaintext_run``."""
    return _run(tmp_path_factory, "plaintext-again", aggregation="plaintext", **EQUIVALENCE)


@pytest.fixture(scope="session")
def secagg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same federation under Flower's SecAgg+."""
    return _run(tmp_path_factory, "secagg", aggregation="secagg", **EQUIVALENCE)


def secret_fragments(client_ctx: Path, count: int = 24) -> list[str]:
    """Text forms (raw, hex, base64) of 16-byte windows of a secret-key context file."""
    import base64

    data = client_ctx.read_bytes()
    step = max(1, (len(data) - 64) // count)
    fragments = []
    for offset in range(48, len(data) - 16, step):
        window = data[offset : offset + 16]
        fragments += [window.hex(), base64.b64encode(window).decode()[:20]]
        fragments.append(window.decode("latin-1"))
    return fragments


def parameter_fragments(model_file: Path, count: int = 200) -> list[str]:
    """Text forms of a released model's parameter values, as a log line would print them."""
    import numpy as np
    import torch

    state = torch.load(model_file)
    values = np.concatenate([v.numpy().ravel() for v in state.values()])
    chosen = values[np.abs(values) > 1e-3][:count]
    fragments = []
    for value in chosen:
        fragments += [repr(float(value))[:12], str(np.float32(value))]
    return fragments


def leaks(text: str, fragments: list[str]) -> list[str]:
    """The fragments that occur in ``text``."""
    return [f for f in fragments if len(f) >= 8 and f in text]


def pids_with_cmdline(*markers: str) -> list[int]:
    """PIDs of live processes whose command line holds every one of ``markers``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if all(marker in cmdline for marker in markers):
                pids.append(int(proc.name))
    return pids


def client_context(config: RunConfig, partition_id: int = 0):
    """The Flower Context a ClientApp of ``partition_id`` receives under ``config``."""
    from flwr.app import Context, RecordDict

    return Context(
        run_id=1,
        node_id=partition_id + 1,
        node_config={"partition-id": partition_id, "num-partitions": config.num_clients},
        state=RecordDict(),
        run_config=config.to_flower(),
    )
