"""The ``flwr`` command line as a client: connections, submitting runs, their status, nodes."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.deploy import topology
from fedpriv.deploy.processes import ProcessGroups, binary, environment
from fedpriv.errors import ConfigError, DeploymentError

CONNECTION = "deploy"
# Seconds between status requests (``flwr ls``), and between them where the caller watches
# the run's output; seconds between looks at that output and the processes.
STATUS_SECONDS = 2.0
STATUS_FALLBACK_SECONDS = 15.0
WATCH_SECONDS = 0.5
# How long the status poll rides out an unreachable SuperLink (a restart takes seconds; its
# state, and with it the run, survives on its database).
UNREACHABLE_SECONDS = 180.0
UNREACHABLE = "Connection to the SuperLink is unavailable"
ALREADY_REGISTERED = "Public key already in use"
# Reports what a deployment is doing.
Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    """Report ``message`` if anyone listens."""
    if progress is not None:
        progress(message)


def connect(flwr_home: Path, superlink: str, ca: str | None) -> dict[str, str]:
    """A private ``$FLWR_HOME`` whose ``deploy`` connection is ``superlink``; its environment.

    Private so that the user's own ``~/.flwr/config.toml`` is never rewritten.
    """
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(topology.connection_toml(CONNECTION, superlink, ca))
    return environment(flwr_home)


def wait_healthy(
    url: str, ca: Path | None, processes: ProcessGroups | None = None, timeout: float = 60
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


def flwr(args: list[str], env: dict[str, str], log: Path, timeout: float = 120) -> str:
    """Run ``flwr ARGS``; log the call and its output; return its standard output.

    Raises
    ------
    DeploymentError
        If it fails or does not answer within ``timeout`` seconds.

    """
    try:
        proc = subprocess.run(
            [binary("flwr"), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as err:
        raise DeploymentError(f"flwr {args[0]} did not answer in {timeout:.0f}s") from err
    with log.open("a") as handle:
        handle.write(f"$ flwr {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout)[-1500:]
        raise DeploymentError(f"flwr {args[0]} failed ({proc.returncode}): {output}")
    return proc.stdout


def register_node(public_key: Path, env: dict[str, str], log: Path) -> None:
    """Register a SuperNode's public key with the SuperLink (one registered already is fine).

    Raises
    ------
    DeploymentError
        If the SuperLink refuses the key for another reason.

    """
    try:
        flwr(["supernode", "register", str(public_key), CONNECTION], env, log)
    except DeploymentError as err:
        if ALREADY_REGISTERED not in str(err):
            raise


def run_status(run_id: int, env: dict[str, str], log: Path) -> dict[str, Any]:
    """The status record ``flwr ls`` gives for ``run_id``."""
    out = flwr(["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"], env, log)
    try:
        status: dict[str, Any] = json.loads(out)["runs"][0]
    except (ValueError, KeyError, IndexError) as err:
        raise DeploymentError(f"flwr ls gave no status for run {run_id}: {out[-500:]}") from err
    return status


RUN_STATUS = "run-status.json"


def submit_run(
    app_dir: Path,
    run_config: str,
    env: dict[str, str],
    logs: Path,
    timeout: float,
    progress: Progress = None,
    check: Callable[[], None] | None = None,
    settled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Submit the app with ``flwr run``, wait for its final status, keep its logs.

    ``check`` raises if the deployment broke; ``settled`` says when the run's output looks
    complete (see :func:`wait_for_run`).

    The SuperLink is the one ``$FLWR_HOME/config.toml`` names as ``deploy``. Writes
    ``run-status.json`` and ``serverapp.log`` (the ServerApp's log lives on the SuperLink)
    into ``logs``.

    Raises
    ------
    DeploymentError
        If the run does not end ``finished:completed`` within ``timeout`` seconds.

    """
    args = ["run", str(app_dir), CONNECTION, "--run-config", run_config, "--format", "json"]
    submitted = flwr(args, env, logs / "flwr.log")
    try:
        run_id = int(json.loads(submitted)["run-id"])
    except (ValueError, KeyError) as err:
        raise DeploymentError(f"flwr run gave no run id: {submitted[-500:]}") from err
    status = wait_for_run(run_id, env, logs, timeout, progress, check, settled)
    (logs / RUN_STATUS).write_text(json.dumps(status, indent=2) + "\n")
    try:
        served = flwr(["log", str(run_id), CONNECTION, "--show"], env, logs / "flwr.log")
        (logs / "serverapp.log").write_text(served)
    except DeploymentError as err:  # the logs are a courtesy; the status decides
        say(progress, f"could not fetch the ServerApp log: {err}")
    if status["status"] != "finished:completed":
        raise DeploymentError(
            f"run {run_id} ended {status['status']}: {status.get('status-details', '')} "
            f"(logs in {logs})"
        )
    return status


def wait_for_run(
    run_id: int,
    env: dict[str, str],
    logs: Path,
    timeout: float,
    progress: Progress,
    check: Callable[[], None] | None,
    settled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Poll the run's status until it finished (``flwr run --stream`` exits 0 on failure too).

    Each status is one ``flwr ls`` process (about a CPU second, which a 2-core deployment
    feels). ``settled``, where the caller can see the run's output, says when the run looks
    done; the status is then asked at once, and otherwise only every
    :data:`STATUS_FALLBACK_SECONDS` (to notice a failed run). Without it, every
    :data:`STATUS_SECONDS`.
    """
    deadline = time.monotonic() + timeout
    every = STATUS_SECONDS if settled is None else STATUS_FALLBACK_SECONDS
    last = ""
    asked = -float("inf")
    unreachable_since: float | None = None
    while True:
        looks_done = settled is not None and settled()
        if looks_done or time.monotonic() - asked >= every:
            asked = time.monotonic()
            try:
                status = run_status(run_id, env, logs / "status.log")
            except DeploymentError as err:
                if UNREACHABLE not in str(err):
                    raise
                now = time.monotonic()
                if unreachable_since is None:
                    unreachable_since = now
                    say(progress, f"run {run_id}: the SuperLink is unreachable; waiting for it")
                if now - unreachable_since > UNREACHABLE_SECONDS:
                    raise
                time.sleep(STATUS_SECONDS)
                continue
            if unreachable_since is not None:
                unreachable_since = None
                say(progress, f"run {run_id}: the SuperLink is back")
            if status["status"] != last:
                last = status["status"]
                say(progress, f"run {run_id}: {last}")
            if last.startswith("finished:"):
                return status
            if looks_done:
                every = STATUS_SECONDS  # output complete, status lagging: ask more often
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise DeploymentError(f"run {run_id} still {last} after {timeout:.0f}s")
        time.sleep(WATCH_SECONDS)
