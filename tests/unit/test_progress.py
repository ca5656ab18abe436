"""Progress without a terminal: a plain line per change and a heartbeat while nothing changes."""

import io
import time

from fedpriv.cli.progress import Reporter


class _Log(io.StringIO):
    def isatty(self):
        return False


def test_plain_lines_for_every_step_and_a_heartbeat():
    log = _Log()
    with Reporter(log, heartbeat=1.0) as reporter:
        reporter.update("comparison", "plaintext: federation", 0, 5)
        reporter.update("attack", "ig", 0.05, 1.0)
        reporter.update("attack", "ig", 0.08, 1.0)  # the same 10% step: no new line
        reporter.update("attack", "ig", 0.5, 1.0)
        time.sleep(2.5)
        reporter.say("done")
    lines = log.getvalue().splitlines()
    assert lines[0].endswith("comparison: plaintext: federation (0/5)")
    assert lines[1].endswith("attack: ig (5%)") and lines[2].endswith("attack: ig (50%)")
    assert any("still working: attack: ig (50%)" in line for line in lines)
    assert lines[-1].endswith("] done")
    assert all(line.startswith("[00:0") for line in lines)
