"""A simulation attached to an existing Ray cluster through RAY_ADDRESS."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fedpriv.deploy.processes import free_port, group_alive, signal_group

# A simulation started beside a running Ray cluster attaches to it: this test runs alone.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]


def _stop_group(pgid: int) -> None:
    """Stop a process group: SIGTERM, then SIGKILL what is still there after 20 s."""
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    signal_group(pgid, signal.SIGKILL)


@contextlib.contextmanager
def ray_head():
    """A one-node Ray cluster on loopback, in its own process group, stopped by that group."""
    # Ray's socket paths must stay under 107 characters: keep the temp dir short.
    temp = Path(tempfile.mkdtemp(prefix="fpray-", dir="/tmp"))
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [
        str(ray), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--object-store-memory", str(256 * 1024**2),
        "--include-dashboard", "false", "--temp-dir", str(temp),
    ]  # fmt: skip
    log = (temp / "head.log").open("w")
    head = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in (temp / "head.log").read_text():
            assert head.poll() is None, (temp / "head.log").read_text()
            assert time.monotonic() < deadline, "the Ray head did not start in 60 s"
            time.sleep(0.5)
        yield {"address": f"127.0.0.1:{port}", "temp": temp, "pgid": head.pid}
    finally:
        _stop_group(head.pid)
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_simulation_runs_on_an_existing_ray_cluster(tmp_path):
    out = tmp_path / "run"
    fedpriv = Path(sys.executable).with_name("fedpriv")
    argv = ["run", "--aggregation", "ckks", "--clients", "3", "--rounds", "2", "--out", str(out)]
    with ray_head() as head:
        env = {**os.environ, "RAY_ADDRESS": head["address"]}
        proc = subprocess.run(
            [str(fedpriv), *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # The run was a job of that cluster: its driver and workers logged into the session.
        logs = next(head["temp"].glob("session_2*")) / "logs"
        names = sorted(p.name for p in logs.iterdir())
        assert any(n.startswith("python-core-driver-") for n in names), names
        assert any(n.startswith("worker-") for n in names), names
        assert group_alive(head["pgid"])  # the cluster outlives the run that used it
    assert not group_alive(head["pgid"])  # and is gone once stopped by its group
    history = json.loads((out / "history.json").read_text())
    assert [len(r["clients"]) for r in history["rounds"]] == [3, 3]
    assert history["rounds"][-1]["accuracy"] > 0.8
