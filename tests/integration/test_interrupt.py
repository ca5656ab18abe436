"""One Ctrl-C (or SIGTERM) stops `fedpriv run` cleanly, and `--resume` finishes the run (slow)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import descendants

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4


def _rounds(out: Path) -> int:
    try:
        return len(json.loads((out / "history.json").read_text())["rounds"])
    except (OSError, ValueError, KeyError):
        return 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_the_run_which_then_resumes(tmp_path, sig):
    out = tmp_path / "run"
    fedpriv = str(Path(sys.executable).with_name("fedpriv"))
    # Enough local work per round that the signal lands inside a round.
    argv = [fedpriv, "run", "--aggregation", "ckks", "--clients", "3", "--rounds", str(ROUNDS)]
    argv += ["--local-epochs", "40", "--out", str(out)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while _rounds(out) < 1:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)  # inside round 2
        started = descendants(proc.pid)
        assert any("raylet" in cmd or "ray::" in cmd for _, cmd in started)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - sent <= 20, "the run took more than 20 s to stop"
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.startswith("fedpriv:")]
    assert lines == [
        f"fedpriv: interrupted: stopped by {sig.name} after round {_rounds(out)} of {ROUNDS}; "
        f"{out} keeps every finished round (continue with: fedpriv run --resume {out})"
    ]
    assert "Traceback" not in err
    time.sleep(2)
    assert [cmd for pid, cmd in started if _alive(pid)] == []  # no Ray or Flower process left
    resumed = subprocess.run(
        [fedpriv, "run", "--resume", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _rounds(out) == ROUNDS and (out / "model.pt").exists()


def test_a_finished_run_is_extended_by_more_rounds(tmp_path):
    """`fedpriv run --resume DIR --rounds N`: a finished 1-round run continued to 2 rounds
    ends on the model an uninterrupted 2-round run releases, bit for bit."""
    from fedpriv.cli import main

    common = ["run", "--aggregation", "plaintext", "--clients", "3"]
    extended, straight = tmp_path / "extended", tmp_path / "straight"
    assert main([*common, "--rounds", "1", "--out", str(extended)]) == 0
    assert main(["run", "--resume", str(extended), "--rounds", "2"]) == 0
    assert main([*common, "--rounds", "2", "--out", str(straight)]) == 0
    assert _rounds(extended) == 2
    assert json.loads((extended / "config.json").read_text())["num-server-rounds"] == 2
    assert (extended / "model.pt").read_bytes() == (straight / "model.pt").read_bytes()
    # Shorter than what finished, or another federation: refused, naming the flag as typed.
    assert main(["run", "--resume", str(extended), "--rounds", "1"]) == 2
    assert main(["run", "--resume", str(extended), "--lr", "0.1"]) == 2
