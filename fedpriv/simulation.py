"""`fedpriv run`: provision keys, run the Flower App on the Simulation Engine, release the model."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import tomli_w

from fedpriv.config import RunConfig
from fedpriv.env import apply_offline_env, ray_init_args
from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory

SERVER_APP = "server.app:app"
CLIENT_APP = "clients.app:app"


def _app_dir(config: RunConfig, parent: Path) -> Path:
    """A minimal Flower App folder whose run-config defaults are exactly ``config``.

    The simulation engine fuses each ClientApp's run config from an app folder; pointing it
    at one written from the resolved configuration keeps `fedpriv run` independent of
    where the package is installed.
    """
    project = {
        "project": {"name": "fedpriv-run", "version": "0.0.0", "dependencies": []},
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedpriv",
                    "components": {"serverapp": SERVER_APP, "clientapp": CLIENT_APP},
                    "config": config.to_flower(),
                }
            }
        },
    }
    (parent / "pyproject.toml").write_text(tomli_w.dumps(project), encoding="utf-8")
    return parent


def check_runnable(config: RunConfig) -> None:
    """Fail fast, before anything is written, on a configuration that cannot run.

    Raises
    ------
    ConfigError
        If the dataset cannot be split among the clients, or the output directory already
        holds another run.

    """
    from fedpriv.task import client_data

    client_data(config, 0, config.num_clients)
    if config.out_dir and RunDirectory(config.out_dir).holds_run() and not config.resume:
        raise ConfigError(
            f"output directory {config.out_dir} already holds a run; choose another --out "
            "or delete it"
        )


def run_simulation(config: RunConfig, verbose: bool = False) -> Path:
    """Run one federation on Flower's Simulation Engine (Ray backend).

    The launcher plays the key holder: under ckks it provisions the keys into
    ``<out>/keys`` before the run, and decrypts the final model afterwards.

    Returns
    -------
    Path
        The run directory.

    """
    apply_offline_env()
    from flwr.app import Context, RecordDict
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    if not config.out_dir:
        raise ConfigError("run_simulation needs config.out_dir")
    rundir = RunDirectory(Path(config.out_dir).resolve())
    if not (config.resume and rundir.holds_run()):
        rundir.create()
    config = config.replace(out_dir=str(rundir.path))
    if config.aggregation == "ckks":
        from fedpriv.crypto.keys import provision_keys

        key_dir = Path(config.key_dir) if config.key_dir else rundir.key_dir
        if not (key_dir / "client.ctx").exists():
            provision_keys(key_dir, config.ckks_preset)
        config = config.replace(key_dir=str(key_dir.resolve()))

    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            **ray_init_args(os.cpu_count()),
            "logging_level": "ERROR",
            "log_to_driver": verbose,
        },
    }
    server_context = Context(
        run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=config.to_flower()
    )
    with tempfile.TemporaryDirectory(prefix="fedpriv-app-") as tmp:
        app_dir = _app_dir(config, Path(tmp))
        try:
            _run_simulation(
                num_supernodes=config.num_clients,
                exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
                client_app_attr=CLIENT_APP,
                server_app_attr=SERVER_APP,
                backend_name="ray",
                backend_config=backend_config,
                server_app_context=server_context,
                app_dir=str(app_dir),
                is_app=True,
                verbose_logging=verbose,
            )
        finally:
            _stop_ray()
    if config.aggregation == "ckks":
        from fedpriv.release import release

        release(rundir.path)
    if config.defense == "dp-sgd":
        from fedpriv.defenses.dp import account_dp_sgd

        account_dp_sgd(rundir.path)
    return rundir.path


def _stop_ray() -> None:
    """Shut down the Ray runtime this process started (its raylet and workers end with it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    logging.getLogger("flwr").debug("ray stopped")
