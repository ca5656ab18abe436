"""`fedpriv deploy local`: the compose topology as processes on loopback, run and torn down."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from fedpriv.config import RunConfig
from fedpriv.deploy import topology
from fedpriv.deploy.cpu import RoundsCpuWatch
from fedpriv.deploy.credentials import make_certificates, make_node_key
from fedpriv.deploy.flwr_cli import (
    Progress,
    connect,
    register_node,
    run_config_string,
    say,
    submit_run,
    wait_healthy,
)
from fedpriv.deploy.processes import ProcessGroups, binary, free_port, free_ports
from fedpriv.device import torch_device
from fedpriv.errors import ConfigError, FedprivError
from fedpriv.release import release
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme

# Starts a SuperLink, a ServerApp SuperExec and per client a SuperNode with its ClientApp
# SuperExec (the flags of :mod:`fedpriv.deploy.topology`, as in ``docker-compose.yml``),
# submits the federation with ``flwr run``, waits for its final status, releases the model as
# the key holder, and stops every process it started by process group, on failure too.

APP_DIR = Path(__file__).resolve().parents[2]
# Where the CPU went while the rounds after the first ran (:class:`~fedpriv.deploy.cpu.RoundsCpu`).
CPU_FILE = "cpu.json"


@dataclass(frozen=True)
class LocalDeployment:
    """One loopback deployment.

    Attributes
    ----------
    config : RunConfig
        The federation (``num-clients`` SuperNodes are started). ``out-dir`` and ``key-dir``
        are set by the launcher.
    out : Path
        Where everything goes: ``run/`` (the run directory), ``logs/``, ``certs/``, ``keys/``.
    tls : bool
        TLS on every connection (SuperLink, SuperNodes' Runtime APIs, the ``flwr`` CLI).
    node_auth : bool
        SuperNode authentication (needs ``tls``): each node's key is registered first.
    app_dir : Path
        The Flower App to submit (this project's root by default).
    timeout : float
        Seconds to wait for the run to finish.

    """

    config: RunConfig
    out: Path
    tls: bool = True
    node_auth: bool = False
    app_dir: Path = APP_DIR
    timeout: float = 900.0

    def __post_init__(self) -> None:
        torch_device(self.config.device)  # its SuperNodes train on this machine
        if self.node_auth and not self.tls:
            raise ConfigError("SuperNode authentication needs TLS (drop --insecure)")
        if not (self.app_dir / "pyproject.toml").is_file():
            raise ConfigError(f"{self.app_dir} is not a Flower App (no pyproject.toml)")


def deploy_local(deployment: LocalDeployment, progress: Progress = None) -> Path:
    """Run ``deployment``; return its run directory (released by the key holders).

    Raises
    ------
    DeploymentError
        If a process does not come up, or the run does not end ``finished:completed``.

    """
    out = deployment.out.resolve()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output directory {out} is not empty; choose another --out")
    logs = out / "logs"
    logs.mkdir(parents=True)
    processes = ProcessGroups(logs)
    # A SIGTERM to the launcher must still stop what it started (the `finally` below).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if in_main else None
    try:
        return _deploy(deployment, out, processes, progress)
    finally:
        processes.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _rounds_recorded(run_dir: Path) -> int:
    """How many rounds the ServerApp has recorded (the run ends after the last)."""
    rundir = RunDirectory(run_dir)
    try:
        return len(rundir.read_history()) if rundir.has_history() else 0
    except (OSError, ValueError, FedprivError):
        return 0  # being written


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _deploy(
    deployment: LocalDeployment, out: Path, processes: ProcessGroups, progress: Progress
) -> Path:
    config = deployment.config
    logs = processes.logs
    tls = None
    if deployment.tls:
        paths = make_certificates(out / "certs")
        tls = topology.TlsFiles(str(paths["ca"]), str(paths["cert"]), str(paths["key"]))
    port = free_port()
    superlink = f"127.0.0.1:{port}"
    env = connect(out / "flwr-home", superlink, tls.ca if tls else None)
    protocol = "https" if tls else "http"
    ca = Path(tls.ca) if tls else None

    # The key holder provisions: the secret key for the nodes, parameters for the server.
    scheme = load_scheme(config)
    keys = scheme.provision_deployment(out / "keys")

    say(progress, f"starting the SuperLink on {superlink} ({'TLS' if tls else 'insecure'})")
    argv = topology.superlink_args(
        tls, "127.0.0.1", port, topology.IN_MEMORY_DATABASE, deployment.node_auth
    )
    processes.start("superlink", [binary("flower-superlink"), *argv], out / "superlink", env)
    wait_healthy(f"{protocol}://{superlink}/health", ca, processes)

    argv = topology.superexec_args(tls, superlink)
    processes.start("superexec-server", [binary("flower-superexec"), *argv], out / "server", env)
    node_ports = free_ports(config.num_clients, exclude={port})
    for partition, node_port in enumerate(node_ports):
        node_dir = out / "nodes" / f"node-{partition}"
        auth_key = None
        if deployment.node_auth:
            auth_key, public = make_node_key(node_dir)
            register_node(public, env, logs / "register.log")
        node_config = topology.node_config(
            partition, config.num_clients, str(keys.node_dir(partition)) if keys else None
        )
        argv = topology.supernode_args(
            tls,
            superlink,
            "127.0.0.1",
            node_port,
            node_config,
            str(auth_key) if auth_key else None,
        )
        processes.start(
            f"supernode-{partition}", [binary(topology.SUPERNODE_BINARY), *argv], node_dir, env
        )
    for partition, node_port in enumerate(node_ports):
        address = f"127.0.0.1:{node_port}"
        wait_healthy(f"{protocol}://{address}/health", ca, processes)
        argv = topology.superexec_args(tls, address)
        processes.start(
            f"superexec-node-{partition}",
            [binary(topology.CLIENTAPP_SUPEREXEC_BINARY), *argv],
            out / "nodes" / f"node-{partition}",
            {**env, **topology.SUPEREXEC_ENV},
        )
    say(progress, f"{config.num_clients} SuperNodes up; submitting the run")

    run_dir = out / "run"
    server_keys = str(keys.server) if keys and keys.server else ""
    run_config = config.replace(out_dir=str(run_dir), key_dir=server_keys)
    watch = RoundsCpuWatch(processes, config.num_server_rounds)
    with watch.following(lambda: _rounds_recorded(run_dir)):
        submit_run(
            deployment.app_dir,
            run_config_string(run_config),
            env,
            logs,
            deployment.timeout,
            progress,
            processes.check_alive,
            settled=lambda: _rounds_recorded(run_dir) >= config.num_server_rounds,
        )
    if (cpu := watch.result()) is not None:
        (logs / CPU_FILE).write_text(json.dumps(cpu.to_json(), indent=2) + "\n")
    if scheme.needs_release and keys is not None:
        release(run_dir, keys.client)
    return run_dir
