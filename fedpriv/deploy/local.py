"""`fedpriv deploy local`: the compose topology as processes on loopback, run and torn down.

Starts a SuperLink, a ServerApp SuperExec and per client a SuperNode with its ClientApp
SuperExec (the flags of :mod:`fedpriv.deploy.topology`, as in ``docker-compose.yml``),
submits the federation with ``flwr run``, waits for its final status, releases the model as
the key holder, and stops every process it started by process group, on failure too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.deploy import topology
from fedpriv.deploy.certs import make_certificates
from fedpriv.env import OFFLINE_ENV
from fedpriv.errors import ConfigError, FedprivError

APP_DIR = Path(__file__).resolve().parents[2]
CONNECTION = "deploy"
STOP_SECONDS = 15.0


class DeploymentError(FedprivError):
    """The deployment did not come up, or its run did not complete."""


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
        if self.node_auth and not self.tls:
            raise ConfigError("SuperNode authentication needs TLS (drop --insecure)")
        if not (self.app_dir / "pyproject.toml").is_file():
            raise ConfigError(f"{self.app_dir} is not a Flower App (no pyproject.toml)")


@dataclass
class _Processes:
    """The process groups a deployment started, stopped in reverse order."""

    logs: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> int:
        cwd.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as log:
            # Its own session: the apps a SuperExec spawns share its process group.
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append((name, proc))
        self._write_pids()
        return proc.pid

    def _write_pids(self) -> None:
        # What ran, for whoever has to stop or audit it: PIDs (= process groups) and argv.
        started = {name: {"pid": proc.pid, "argv": proc.args} for name, proc in self.started}
        (self.logs / "processes.json").write_text(json.dumps(started, indent=2) + "\n")

    def check_alive(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise DeploymentError(f"{name} exited with code {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for _, proc in reversed(self.started):
            signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and any(group_alive(p.pid) for _, p in self.started):
            time.sleep(0.2)
        for _, proc in self.started:
            signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid`` (gone already: nothing to do)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(name: str) -> str:
    # The Flower executables installed beside this interpreter (a venv need not be active).
    return str(Path(sys.executable).with_name(name))


def _environment(flwr_home: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(flwr_home)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _wait_healthy(url: str, ca: Path | None, processes: _Processes, timeout: float = 60) -> None:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        processes.check_alive()
        if time.monotonic() > deadline:
            raise DeploymentError(f"{url} did not become healthy in {timeout:.0f}s")
        time.sleep(0.3)


def run_config_string(config: RunConfig) -> str:
    """``flwr run --run-config`` syntax for every key of ``config``."""
    items = []
    for key, value in config.to_flower().items():
        if isinstance(value, bool):
            items.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, str):
            if "'" in value:
                raise ConfigError(f"{key}: a value with a single quote cannot be passed to flwr")
            items.append(f"{key}='{value}'")
        else:
            items.append(f"{key}={value!r}")
    return " ".join(items)


def _node_auth_key(directory: Path) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format (what ``ssh-keygen -t ecdsa -b 384`` writes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from fedpriv.crypto.keys import write_private, write_public

    key = ec.generate_private_key(ec.SECP384R1())
    private = directory / "auth_key"
    public = directory / "auth_key.pub"
    directory.mkdir(parents=True, exist_ok=True)
    write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    write_public(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    )
    return private, public


def _flwr(args: list[str], env: dict[str, str], log: Path, timeout: float = 120) -> str:
    proc = subprocess.run(
        [_binary("flwr"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    with log.open("a") as handle:
        handle.write(f"$ flwr {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise DeploymentError(f"flwr {args[0]} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def _run_status(run_id: int, env: dict[str, str], log: Path) -> dict[str, Any]:
    out = _flwr(["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"], env, log)
    return json.loads(out)["runs"][0]


def deploy_local(deployment: LocalDeployment, progress: Any = None) -> Path:
    """Run ``deployment``; return its run directory (released under ckks).

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
    processes = _Processes(logs)
    try:
        return _deploy(deployment, out, processes, progress)
    finally:
        processes.stop()


def _say(progress: Any, message: str) -> None:
    if progress is not None:
        progress(message)


def _deploy(deployment: LocalDeployment, out: Path, processes: _Processes, progress: Any) -> Path:
    config = deployment.config
    logs = processes.logs
    env = _environment(out / "flwr-home")
    (out / "flwr-home").mkdir()
    tls = None
    if deployment.tls:
        paths = make_certificates(out / "certs")
        tls = topology.TlsFiles(str(paths["ca"]), str(paths["cert"]), str(paths["key"]))
    port = free_port()
    superlink = f"127.0.0.1:{port}"
    (out / "flwr-home" / "config.toml").write_text(
        topology.connection_toml(CONNECTION, superlink, tls.ca if tls else None)
    )
    scheme = "https" if tls else "http"
    ca = Path(tls.ca) if tls else None

    # The key holder provisions: the secret key for the nodes, parameters for the server.
    client_keys = server_keys = None
    if config.aggregation == "ckks":
        from fedpriv.crypto.keys import provision_keys

        client_keys, server_keys = out / "keys" / "client", out / "keys" / "server"
        provision_keys(client_keys, config.ckks_preset, server_keys)

    _say(progress, f"starting the SuperLink on {superlink} ({'TLS' if tls else 'insecure'})")
    argv = topology.superlink_args(
        tls, "127.0.0.1", port, str(out / "superlink" / "state.db"), deployment.node_auth
    )
    processes.start("superlink", [_binary("flower-superlink"), *argv], out / "superlink", env)
    _wait_healthy(f"{scheme}://{superlink}/health", ca, processes)

    argv = topology.superexec_args(tls, superlink)
    processes.start("superexec-server", [_binary("flower-superexec"), *argv], out / "server", env)
    node_ports = [free_port() for _ in range(config.num_clients)]
    for partition, node_port in enumerate(node_ports):
        node_dir = out / "nodes" / f"node-{partition}"
        auth_key = None
        if deployment.node_auth:
            auth_key, public = _node_auth_key(node_dir)
            _flwr(
                ["supernode", "register", str(public), CONNECTION],
                env,
                logs / "register.log",
            )
        node_config = topology.node_config(
            partition, config.num_clients, str(client_keys) if client_keys else None
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
            f"supernode-{partition}", [_binary("flower-supernode"), *argv], node_dir, env
        )
    for partition, node_port in enumerate(node_ports):
        address = f"127.0.0.1:{node_port}"
        _wait_healthy(f"{scheme}://{address}/health", ca, processes)
        argv = topology.superexec_args(tls, address)
        processes.start(
            f"superexec-node-{partition}",
            [_binary("flower-superexec"), *argv],
            out / "nodes" / f"node-{partition}",
            env,
        )
    _say(progress, f"{config.num_clients} SuperNodes up; submitting the run")

    run_dir = out / "run"
    run_config = config.replace(
        out_dir=str(run_dir), key_dir=str(server_keys) if server_keys else ""
    )
    submitted = _flwr(
        [
            "run",
            str(deployment.app_dir),
            CONNECTION,
            "--run-config",
            run_config_string(run_config),
            "--format",
            "json",
        ],
        env,
        logs / "flwr.log",
    )
    run_id = int(json.loads(submitted)["run-id"])
    status = _wait_for_run(run_id, env, logs, processes, deployment.timeout, progress)
    (logs / "run-status.json").write_text(json.dumps(status, indent=2) + "\n")
    # The ServerApp's own log lives on the SuperLink: keep it with the others.
    (logs / "serverapp.log").write_text(
        _flwr(["log", str(run_id), CONNECTION, "--show"], env, logs / "flwr.log")
    )
    if status["status"] != "finished:completed":
        raise DeploymentError(
            f"run {run_id} ended {status['status']}: {status.get('status-details', '')} "
            f"(logs in {logs})"
        )
    if client_keys is not None:
        from fedpriv.release import release

        release(run_dir, client_keys)
    return run_dir


def _wait_for_run(
    run_id: int,
    env: dict[str, str],
    logs: Path,
    processes: _Processes,
    timeout: float,
    progress: Any,
) -> dict[str, Any]:
    # `flwr run --stream` exits 0 on failure too: poll the run's status instead.
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        status = _run_status(run_id, env, logs / "status.log")
        if status["status"] != last:
            last = status["status"]
            _say(progress, f"run {run_id}: {last}")
        if last.startswith("finished:"):
            return status
        processes.check_alive()
        if time.monotonic() > deadline:
            raise DeploymentError(f"run {run_id} still {last} after {timeout:.0f}s")
        time.sleep(2)
