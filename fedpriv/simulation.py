"""`fedpriv run`: provision keys, run the Flower App on the Simulation Engine, release the model."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
from logging import WARNING
from pathlib import Path
from typing import Any

import ray
import tomli_w

from fedpriv.config import RunConfig
from fedpriv.device import simulation_gpu_share, torch_device
from fedpriv.env import apply_offline_env, ray_init_args
from fedpriv.errors import AggregateRejectedError, ConfigError, InterruptedRunError
from fedpriv.federation import cancel
from fedpriv.federation.cancel import RunCancelled
from fedpriv.flower_internals import log, run_simulation_app
from fedpriv.rundir import RELEASE_REFUSED, RunDirectory, write_json
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
        If the device is not on this machine, the dataset cannot be split among the
        clients, or the output directory already holds another run.

    """
    torch_device(config.device)
    client_data(config, 0)
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
    torch_device(config.device)  # refused before the run directory is made
    rundir = RunDirectory(Path(config.out_dir).resolve())
    if not (config.resume and rundir.holds_run()):
        rundir.create()
    config = load_scheme(config.replace(out_dir=str(rundir.path))).provision(rundir)
    init_args: dict[str, Any] = {
        **ray_init_args(os.cpu_count()),
        "logging_level": "ERROR",
        "log_to_driver": verbose,
    }
    backend_config = {
        "client_resources": {
            "num_cpus": 1,
            "num_gpus": simulation_gpu_share(
                config.client_num_gpus, config.device, os.cpu_count() or 1
            ),
        },
        "init_args": init_args,
    }
    stop = StopOnSignal()
    with tempfile.TemporaryDirectory(prefix="fedpriv-app-") as tmp:
        app_dir = _app_dir(config, Path(tmp))
        try:
            # Ray first: ray.init installs its own SIGTERM handler, which must not replace
            # the one that stops the run cleanly.
            _start_ray(init_args)
            with stop:
                run_simulation_app(
                    config.num_nodes,
                    SERVER_APP,
                    CLIENT_APP,
                    str(app_dir),
                    config.to_flower(),
                    backend_config,
                    verbose,
                )
        except RunCancelled:
            pass  # the ServerApp stopped as asked; said below
        finally:
            _stop_ray()
        if stop.signal is not None:
            finished = len(rundir.read_history()) if rundir.has_history() else 0
            raise InterruptedRunError(
                f"stopped by {stop.signal.name} after round {finished} of "
                f"{config.num_server_rounds}; {rundir.path} keeps every finished round "
                f"(continue with: fedpriv run --resume {rundir.path})"
            )
    scheme = load_scheme(config)
    try:
        scheme.release(rundir)
    except AggregateRejectedError as err:
        if config.adversary_plan.honest:
            raise
        # A malicious server's run whose final checkpoint is no verified sum: the key holder
        # refusing to release it is the outcome, recorded for the attacks' report.
        log(WARNING, "the key holder refused to release the model: %s", err)
        write_json(rundir.path / RELEASE_REFUSED, {"reason": str(err)})
        return rundir.path
    scheme.defense.after_run(rundir)
    return rundir.path


class StopOnSignal:
    """SIGINT and SIGTERM ask the federation to stop, once, instead of killing the launcher.

    The first signal sets :data:`fedpriv.federation.cancel.STOP`: the ServerApp ends
    between two steps, the Simulation Engine then stops its clients, and the launcher shuts
    Ray down; every finished round stays in the run directory. Should that take longer than
    :attr:`grace` seconds, the process exits anyway (code 130); a second signal does so at
    once. Outside the main thread (where Python allows no handlers) nothing is installed.
    """

    grace = 30.0

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopOnSignal:
        cancel.STOP.clear()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        cancel.STOP.clear()

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signal is not None:
            os._exit(128 + signum)  # a second signal: the user means it
        self.signal = signal.Signals(signum)
        cancel.STOP.set()
        watchdog = threading.Timer(self.grace, os._exit, args=(128 + signum,))
        watchdog.daemon = True
        watchdog.start()


def _start_ray(init_args: dict[str, Any]) -> None:
    """Start (or attach to) Ray as Flower's Ray backend would, before Flower does."""
    if ray.is_initialized():
        return
    # Ray's workers inherit the environment, not this driver's sys.path (Flower does the same).
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **init_args)


def _stop_ray() -> None:
    """Shut down the Ray runtime this process started (its raylet and workers end with it)."""
    if ray.is_initialized():
        ray.shutdown()
    logging.getLogger("flwr").debug("ray stopped")
