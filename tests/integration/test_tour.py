"""The README's tour, run as a new user runs it: each command within the time it promises (slow).

A command finishes within a minute or prints, before its work starts, how long it will take
(``fedpriv attack``'s estimate, timed on the run's model); the test holds each to its word.
It runs alone, after the parallel part of ``make test``, so that the machine is as idle as a
user's: the budgets are for "these machines", not for one shared with another worker. The
tour's ``fedpriv bench --quick`` is also where the bench's fields are checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]
BUDGET_SECONDS = 60.0
ESTIMATE = re.compile(r"estimated time: .*\(up to (?P<bound>[\dhmins ]+?) if the machine")
RATIOS = (
    "bytes_up_ratio",
    "bytes_down_ratio",
    "encrypt_seconds_per_1m",
    "decrypt_seconds_per_1m",
    "server_parse_add_seconds_per_1m",
    "server_add_ratio",
    "server_parse_add_ratio",
)


def tour_commands() -> list[str]:
    """The command lines of the README's "A tour" block, comments stripped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A tour\s+```bash\n(.*?)```", text, re.DOTALL)
    assert block, "the README has no tour block"
    commands = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [c for c in commands if c]


def seconds_of(duration: str) -> float:
    """``"3 min 20 s"`` (as :func:`fedpriv.attacks.estimate.duration` writes it) in seconds."""
    units = {"h": 3600, "min": 60, "s": 1}
    pairs = re.findall(r"(\d+) (h|min|s)\b", duration)
    assert pairs, duration
    return float(sum(int(n) * units[u] for n, u in pairs))


def test_seconds_of_reads_what_duration_writes():
    from fedpriv.attacks.estimate import duration

    for seconds in (1, 59, 60, 61, 3599, 3600, 3720):
        assert seconds_of(duration(seconds)) == seconds
    assert seconds_of(duration(3725)) == 3720  # past an hour, to the minute


def _timed(command: str, cwd: Path, env: dict[str, str]) -> tuple[str, float, float | None, float]:
    """Output, wall seconds, the printed bound (None: none) and when it was printed."""
    start = time.monotonic()
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines, bound, printed = [], None, 0.0
    for line in process.stdout:
        lines.append(line)
        found = ESTIMATE.search(line)
        if found and bound is None:
            bound, printed = seconds_of(found["bound"]), time.monotonic() - start
    process.wait(timeout=3600)
    output = "".join(lines)
    assert process.returncode == 0, f"{command}\n{output[-3000:]}"
    return output, time.monotonic() - start, bound, printed


def test_the_readme_tour_keeps_the_time_it_promises(tmp_path):
    commands = tour_commands()
    assert any(c.startswith("fedpriv attack") for c in commands)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # A new user's first hour: no shadow models cached yet.
        "FEDPRIV_CACHE_DIR": str(tmp_path / "cache"),
    }
    timings = []
    for command in commands:
        output, wall, bound, printed = _timed(command, tmp_path, env)
        timings.append((command, round(wall, 1), bound))
        if bound is None:
            assert wall <= BUDGET_SECONDS, (command, wall, output[-2000:])
        else:
            # It says how long before the work starts, and keeps to it.
            assert printed <= BUDGET_SECONDS, (command, printed)
            assert wall - printed <= bound, (command, wall, printed, bound, output[-3000:])
    print("tour timings (command, seconds, printed bound):", timings)
    attacked = tmp_path / "runs" / "ckks" / "attacks"
    assert {p.name for p in attacked.iterdir() if p.is_dir()} >= {
        "curious-server",
        "colluding-client",
        "outsider",
    }
    _check_quick_bench(json.loads((tmp_path / "results" / "bench" / "bench.json").read_text()))


def _check_quick_bench(results: dict) -> None:
    """`fedpriv bench --quick`'s fields, and the size targets it shows."""
    rows = {(r["preset"], r["parameters"]): r for r in results["sizes"]}
    presets = {
        "n4096-packed",
        "n4096-threshold",
        "n4096-compact",
        "n4096-additive",
        "nvflare-default",
    }
    assert {p for p, _ in rows} == presets
    for row in rows.values():
        assert all(row[key] > 0 for key in RATIOS), row
        for side in ("plaintext", "ckks"):
            assert row[side]["bytes_up"] > 0 and row[side]["bytes_down"] > 0
        predicted = row["ckks"]["predicted_std"]
        assert row["ckks"]["max_abs_error"] < (
            1e-6 if predicted != predicted else max(1e-6, 6 * predicted)
        )
        assert set(row["bytes_down_ratio_by_clients"]) == {"10", "100", "1000"}
    # Sizes are deterministic: the packed format's upload is 4.5 bytes a value (1.125x
    # float32), its seed-list download adds a 32-byte seed per client and ciphertext, its
    # expanded one a second polynomial (2.25x, what the default link gets past 65 uploads);
    # the compact format stays under 2x, TenSEAL's vectors cost 8x, NVFlare's setting ~14.5x.
    packed = rows[("n4096-packed", 200_000)]
    assert packed["bytes_up_ratio"] < 1.2
    down = packed["bytes_down_ratio_by_clients"]
    assert down["10"] < 1.2 and down["100"] < 1.4 and down["1000"] < 2.3
    assert 2.2 < packed["bytes_down_expanded_ratio"] < 2.3
    assert packed["bytes_down_ratio"] < 1.2  # the bench's uploads are within the break-even
    # Expanded, a client's decryption no longer expands a seed per upload.
    decrypt = packed["decrypt_seconds_per_1m_by_clients"]
    assert packed["decrypt_seconds_expanded_per_1m"] < decrypt["100"]
    assert rows[("n4096-compact", 200_000)]["bytes_up_ratio"] < 2.0
    assert 7.5 < rows[("n4096-additive", 200_000)]["bytes_up_ratio"] < 8.5
    assert 14 < rows[("nvflare-default", 200_000)]["bytes_up_ratio"] < 15
    # ckks-threshold: an upload (c0 only) and a decryption share up, 36 bits a value each
    # (2.25x float32); the plaintext model and a request naming the uploaders down. Issue
    # 27's goals: up <= 3x, down <= 1.5x.
    threshold = rows[("n4096-threshold", 200_000)]
    assert 2.2 < threshold["bytes_up_ratio"] < 2.35 and 0.99 < threshold["bytes_down_ratio"] < 1.01
    assert threshold["server_finish_seconds_per_1m"] > 0
    for entry in results["precision"]:
        threshold_preset = entry["preset"] == "n4096-threshold"
        assert entry["clients"] == (20 if threshold_preset else 100) and entry["bound"] == 4.0
        predicted = entry["predicted_std"]
        limit = 1e-6 if predicted != predicted else max(1e-6, 6 * predicted)  # NaN: none
        assert entry["max_abs_error"] < limit
    e2e = results["end_to_end"]
    assert e2e["round_seconds_ratio"] > 0 and e2e["ckks"]["final_accuracy"] > 0.5
    assert e2e["plaintext"]["final_accuracy"] > 0.5
    # Authentication beside the unauthenticated arm: tags and verification measured side
    # by side; its bytes are a few dozen per upload and per summed upload.
    assert e2e["ckks_unauthenticated"]["final_accuracy"] > 0.5
    assert 1.0 < e2e["authenticated_bytes_ratio"] < 1.05
    (auth,) = [a for a in results["authentication"] if a["parameters"] == 200_000]
    assert auth["preset"] == "n4096-packed" and 1.0 < auth["bytes_ratio"] < 1.01
    assert auth["tag_seconds_per_1m"] > 0 and auth["verify_seconds_per_1m"] > 0
    # Authenticated threshold CKKS: a decrypting party receives every upload's signature and
    # digest (about 100 bytes each) instead of the uploaders' indices: a few kilobytes.
    (verification,) = [v for v in results["threshold_verification"] if v["parameters"] == 200_000]
    uploads = verification["clients"]
    assert verification["passive_request_bytes"] < 200
    assert 90 * uploads < verification["authenticated_request_bytes"] < 200 * uploads
    assert verification["sign_seconds_per_1m"] > 0 and verification["verify_seconds_per_1m"] > 0
