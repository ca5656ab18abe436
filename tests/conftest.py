"""Shared fixtures: an offline Flower environment and federations reused across tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support import EQUIVALENCE

from fedpriv.config import RunConfig


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("flwr_home")
    os.environ["FLWR_HOME"] = str(home)
    # Datasets and splits the tests build are cached here, not in the user's cache.
    os.environ.setdefault("FEDPRIV_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
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
            from fedpriv.crypto.authenticated import AuthPolicy
            from fedpriv.crypto.presets import get_preset

            packed = get_preset(preset).backend == "packed"
            provision_keys(made[preset], preset, auth=AuthPolicy() if packed else None)
        return made[preset]

    return key_set


@pytest.fixture(scope="session")
def key_dir(key_sets) -> Path:
    """A key set of the default preset (client context 0600, parameters-only server context)."""
    from fedpriv.crypto.presets import DEFAULT_PRESET

    return key_sets(DEFAULT_PRESET)


@pytest.fixture(scope="session")
def legacy_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key set of the default preset without a MAC key: the unauthenticated protocol."""
    from fedpriv.crypto.keys import provision_keys
    from fedpriv.crypto.presets import DEFAULT_PRESET

    path = tmp_path_factory.mktemp("keys-legacy")
    provision_keys(path, DEFAULT_PRESET)
    return path


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


EXAMPLE_APP = Path(__file__).resolve().parents[1] / "examples" / "pytorch-plain"


@pytest.fixture(scope="module")
def app():
    """The example Flower app's modules (``examples/pytorch-plain``), importable as its own
    package: ``(client_app, task)``."""
    sys.path.insert(0, str(EXAMPLE_APP))
    try:
        from pytorch_app import client_app, task

        yield client_app, task
    finally:
        sys.path.remove(str(EXAMPLE_APP))
