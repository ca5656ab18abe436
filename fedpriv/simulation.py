"""`fedpriv run`: provision keys, run the Flower App on the Simulation Engine, release the model."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import ray
import tomli_w

from fedpriv.config import RunConfig
from fedpriv.env import apply_offline_env, ray_init_args
from fedpriv.errors import ConfigError
from fedpriv.flower import run_simulation_app
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme
from fedpriv.task import client_data

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
    client_data(config, 0, config.num_clients)
    if config.out_dir and RunDirectory(config.out_dir).holds_run() and not config.resume:
        raise ConfigError(
            f"output directory {config.out_dir} already holds a run; choose another --out "
            "or delete it"
        )


def run_simulation(config: RunConfig, verbose: bool = False) -> Path:
    """Run one federation on Flower's Simulation Engine (Ray backend).

    The launcher plays the key holder: it provisions what the scheme needs before the run
    (keys into ``<out>/keys`` under ckks) and releases the model afterwards.

    Returns
    -------
    Path
        The run directory.

    """
    apply_offline_env()
    if not config.out_dir:
        raise ConfigError("run_simulation needs config.out_dir")
    rundir = RunDirectory(Path(config.out_dir).resolve())
    if not (config.resume and rundir.holds_run()):
        rundir.create()
    config = load_scheme(config.replace(out_dir=str(rundir.path))).provision(rundir)
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            **ray_init_args(os.cpu_count()),
            "logging_level": "ERROR",
            "log_to_driver": verbose,
        },
    }
    with tempfile.TemporaryDirectory(prefix="fedpriv-app-") as tmp:
        app_dir = _app_dir(config, Path(tmp))
        try:
            run_simulation_app(
                config.num_clients,
                SERVER_APP,
                CLIENT_APP,
                str(app_dir),
                config.to_flower(),
                backend_config,
                verbose,
            )
        finally:
            _stop_ray()
    scheme = load_scheme(config)
    scheme.release(rundir)
    scheme.defense.after_run(rundir)
    return rundir.path


def _stop_ray() -> None:
    """Shut down the Ray runtime this process started (its raylet and workers end with it)."""
    if ray.is_initialized():
        ray.shutdown()
    logging.getLogger("flwr").debug("ray stopped")
