"""Where a deployment's CPU goes: per-session CPU from /proc, and the per-round split."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from fedpriv.deploy.cpu import (
    OTHER,
    RoundsCpu,
    RoundsCpuWatch,
    role,
    session_cpu_seconds,
)
from fedpriv.deploy.processes import ProcessGroups

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc")

# Burns about `seconds` of CPU in a forked child (reaped), then as much itself, then waits.
BURN = """
import os, sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
pid = os.fork()
if pid == 0:
    burn({seconds})
    os._exit(0)
os.waitpid(pid, 0)
burn({seconds})
print("done", flush=True)
time.sleep(30)
"""


def test_a_sessions_cpu_counts_its_reaped_children(tmp_path):
    processes = ProcessGroups(tmp_path)
    try:
        pid = processes.start(
            "supernode-0", [sys.executable, "-c", BURN.format(seconds=0.3)], tmp_path, {}
        )
        log = tmp_path / "supernode-0.log"
        for _ in range(200):
            if log.is_file() and "done" in log.read_text():
                break
            processes.check_alive()
            time.sleep(0.05)
        seconds = session_cpu_seconds({"node": pid, "nobody": 2**22 + 7})
    finally:
        processes.stop()
    assert seconds["nobody"] == 0.0
    # The child's 0.3 s (reaped: in the parent's cutime) and the parent's own 0.3 s.
    assert 0.55 <= seconds["node"] < 5.0


def test_roles_follow_the_names_a_local_deployment_starts():
    assert role("superlink") == "SuperLink"
    assert role("supernode-3") == "SuperNodes"
    assert role("superexec-node-3") == "ClientApps"
    assert role("superexec-server") == "ServerApp"
    assert role("register") == OTHER


def test_per_round_split_and_json_round_trip():
    cpu = RoundsCpu(1, 3, 5.0, 10.0, {"SuperLink": 3.0, "SuperNodes": 2.0, "ClientApps": 4.0})
    assert cpu.rounds == 2
    assert cpu.per_round() == {"SuperLink": 1.5, "SuperNodes": 1.0, "ClientApps": 2.0, OTHER: 0.5}
    assert RoundsCpu.from_json(cpu.to_json()) == cpu
    with pytest.raises(ValueError, match="whole round"):
        RoundsCpu(2, 2, 5.0, 1.0, {})


def test_the_watch_looks_after_the_first_round_and_after_the_last(tmp_path):
    watch = RoundsCpuWatch(ProcessGroups(tmp_path), rounds=3)
    watch.observe(0)
    assert watch.result() is None
    watch.observe(1)
    watch.observe(2)
    assert watch.result() is None
    watch.observe(3)
    result = watch.result()
    assert result is not None and (result.first_round, result.last_round) == (1, 3)
    assert result.wall_seconds > 0 and result.cpu_seconds == {}
    watch.observe(3)  # later looks change nothing
    assert watch.result() == result


def test_following_sees_rounds_that_pass_while_the_caller_is_busy(tmp_path):
    recorded = iter([0, 0, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3])
    watch = RoundsCpuWatch(ProcessGroups(tmp_path), rounds=3)
    with watch.following(lambda: next(recorded, 3)):
        time.sleep(2.0)  # the launcher blocked in a `flwr` command
    result = watch.result()
    assert result is not None and (result.first_round, result.last_round) == (1, 3)
