"""Processes a deployment starts: each in its own group, logged, and stopped by group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedpriv.env import OFFLINE_ENV
from fedpriv.errors import DeploymentError

STOP_SECONDS = 15.0


@dataclass
class ProcessGroups:
    """The process groups a deployment started, stopped in reverse order.

    Every process runs in its own session: the apps a SuperExec spawns share its process
    group, so stopping the group stops them too. PIDs and argv go to ``processes.json``.
    """

    logs: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> int:
        """Start ``argv`` in ``cwd``, logging to ``<logs>/<name>.log``; return its PID."""
        cwd.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as log:
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
        """Raise :class:`DeploymentError` (with its log's tail) if a process exited."""
        for name, proc in self.started:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise DeploymentError(f"{name} exited with code {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM every group, wait, then SIGKILL what is left."""
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
    sockets: list[socket.socket] = []
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


def binary(name: str) -> str:
    """A Flower executable installed beside this interpreter (a venv need not be active)."""
    return str(Path(sys.executable).with_name(name))


def environment(flwr_home: Path) -> dict[str, str]:
    """The environment of Flower's processes: offline, quiet, this venv's executables."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(flwr_home)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env
