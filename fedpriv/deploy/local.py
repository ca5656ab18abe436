"""`fedpriv deploy local`: the compose topology as processes on loopback, run and torn down."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.deploy import topology
from fedpriv.deploy.certs import make_certificates
from fedpriv.env import OFFLINE_ENV
from fedpriv.errors import ConfigError, FedprivError

# Starts a SuperLink, a ServerApp SuperExec and per client a SuperNode with its ClientApp
# SuperExec (the flags of :mod:`fedpriv.deploy.topology`, as in ``docker-compose.yml``),
# submits the federation with ``flwr run``, waits for its final status, releases the model as
# the key holder, and stops every process it started by process group, on failure too.

APP_DIR = Path(__file__).resolve().parents[2]
Progress = Callable[[str], None] | None
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
        while time.monotonic() < deadline and any(self._running()):
            time.sleep(0.2)
        for _, proc in self.started:
            signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _running(self) -> list[bool]:
        # poll() reaps a leader that exited: a zombie leader would keep its group "alive".
        return [proc.poll() is None or group_alive(proc.pid) for _, proc in self.started]


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
    return free_ports(1)[0]


def free_ports(count: int, exclude: set[int] | None = None) -> list[int]:
    """``count`` distinct TCP ports free on loopback right now (all bound at once)."""
    sockets = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in (exclude or set()):
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _binary(name: str) -> str:
    # The Flower executables installed beside this interpreter (a venv need not be active).
    return str(Path(sys.executable).with_name(name))


def connect(flwr_home: Path, superlink: str, ca: str | None) -> dict[str, str]:
    """A private ``$FLWR_HOME`` whose ``deploy`` connection is ``superlink``; its environment.

    Private so that the user's own ``~/.flwr/config.toml`` is never rewritten.
    """
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(topology.connection_toml(CONNECTION, superlink, ca))
    return environment(flwr_home)


def environment(flwr_home: Path) -> dict[str, str]:
    """The environment of Flower's processes: offline, quiet, this venv's executables."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(flwr_home)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def wait_healthy(
    url: str, ca: Path | None, processes: _Processes | None = None, timeout: float = 60
) -> None:
    """Wait until ``url`` (a Flower ``/health`` endpoint) answers 200.

    Raises
    ------
    DeploymentError
        If it does not within ``timeout`` seconds, or a process of ``processes`` exited.

    """
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if processes is not None:
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


NODE_KEY, NODE_PUBLIC_KEY = "auth_key", "auth_key.pub"
ALREADY_REGISTERED = "Public key already in use"


def make_node_key(directory: Path) -> tuple[Path, Path]:
    """A SuperNode's ECDSA P-384 key pair in OpenSSH format (as ``ssh-keygen -t ecdsa -b 384``).

    Returns
    -------
    tuple[Path, Path]
        The private key (0600) and the public key to register.

    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from fedpriv.crypto.keys import write_private, write_public

    key = ec.generate_private_key(ec.SECP384R1())
    private = directory / NODE_KEY
    public = directory / NODE_PUBLIC_KEY
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


def register_node(public_key: Path, env: dict[str, str], log: Path) -> None:
    """Register a SuperNode's public key with the SuperLink (one registered already is fine).

    Raises
    ------
    DeploymentError
        If the SuperLink refuses the key for another reason.

    """
    try:
        _flwr(["supernode", "register", str(public_key), CONNECTION], env, log)
    except DeploymentError as err:
        if ALREADY_REGISTERED not in str(err):
            raise


def _flwr(args: list[str], env: dict[str, str], log: Path, timeout: float = 120) -> str:
    try:
        proc = subprocess.run(
            [_binary("flwr"), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as err:
        raise DeploymentError(f"flwr {args[0]} did not answer in {timeout:.0f}s") from err
    with log.open("a") as handle:
        handle.write(f"$ flwr {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout)[-1500:]
        raise DeploymentError(f"flwr {args[0]} failed ({proc.returncode}): {output}")
    return proc.stdout


def _run_status(run_id: int, env: dict[str, str], log: Path) -> dict[str, Any]:
    out = _flwr(["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"], env, log)
    try:
        return json.loads(out)["runs"][0]
    except (ValueError, KeyError, IndexError) as err:
        raise DeploymentError(f"flwr ls gave no status for run {run_id}: {out[-500:]}") from err


def deploy_local(deployment: LocalDeployment, progress: Progress = None) -> Path:
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
    # A SIGTERM to the launcher must still stop what it started (the `finally` below).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if in_main else None
    try:
        return _deploy(deployment, out, processes, progress)
    finally:
        processes.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _deploy(
    deployment: LocalDeployment, out: Path, processes: _Processes, progress: Progress
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
    wait_healthy(f"{scheme}://{superlink}/health", ca, processes)

    argv = topology.superexec_args(tls, superlink)
    processes.start("superexec-server", [_binary("flower-superexec"), *argv], out / "server", env)
    node_ports = free_ports(config.num_clients, exclude={port})
    for partition, node_port in enumerate(node_ports):
        node_dir = out / "nodes" / f"node-{partition}"
        auth_key = None
        if deployment.node_auth:
            auth_key, public = make_node_key(node_dir)
            register_node(public, env, logs / "register.log")
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
        wait_healthy(f"{scheme}://{address}/health", ca, processes)
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
    submit_run(
        deployment.app_dir,
        run_config_string(run_config),
        env,
        logs,
        deployment.timeout,
        progress,
        processes.check_alive,
    )
    if client_keys is not None:
        from fedpriv.release import release

        release(run_dir, client_keys)
    return run_dir


def submit_run(
    app_dir: Path,
    run_config: str,
    env: dict[str, str],
    logs: Path,
    timeout: float,
    progress: Progress = None,
    check: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Submit the app with ``flwr run``, wait for its final status, keep its logs.

    The SuperLink is the one ``$FLWR_HOME/config.toml`` names as ``deploy``. Writes
    ``run-status.json`` and ``serverapp.log`` (the ServerApp's log lives on the SuperLink)
    into ``logs``.

    Raises
    ------
    DeploymentError
        If the run does not end ``finished:completed`` within ``timeout`` seconds.

    """
    args = ["run", str(app_dir), CONNECTION, "--run-config", run_config, "--format", "json"]
    submitted = _flwr(args, env, logs / "flwr.log")
    try:
        run_id = int(json.loads(submitted)["run-id"])
    except (ValueError, KeyError) as err:
        raise DeploymentError(f"flwr run gave no run id: {submitted[-500:]}") from err
    status = _wait_for_run(run_id, env, logs, timeout, progress, check)
    (logs / "run-status.json").write_text(json.dumps(status, indent=2) + "\n")
    try:
        served = _flwr(["log", str(run_id), CONNECTION, "--show"], env, logs / "flwr.log")
        (logs / "serverapp.log").write_text(served)
    except DeploymentError as err:  # the logs are a courtesy; the status decides
        _say(progress, f"could not fetch the ServerApp log: {err}")
    if status["status"] != "finished:completed":
        raise DeploymentError(
            f"run {run_id} ended {status['status']}: {status.get('status-details', '')} "
            f"(logs in {logs})"
        )
    return status


def _wait_for_run(
    run_id: int,
    env: dict[str, str],
    logs: Path,
    timeout: float,
    progress: Progress,
    check: Callable[[], None] | None,
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
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise DeploymentError(f"run {run_id} still {last} after {timeout:.0f}s")
        time.sleep(2)
