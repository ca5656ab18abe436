"""The example Flower app and its encrypted twin (``examples/``), run by Flower's ``flwr run``."""

import difflib
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from support import flwr_run, pids_with_cmdline

ROOT = Path(__file__).resolve().parents[2]
PLAIN, ENCRYPTED = ROOT / "examples" / "pytorch-plain", ROOT / "examples" / "pytorch-encrypted"
FEDERATION = "num-supernodes=3 client-resources-num-cpus=1"
ROUNDS = 2


def _files(app: Path) -> dict[str, list[str]]:
    return {
        str(p.relative_to(app)): p.read_text().splitlines()
        for p in sorted(app.rglob("*"))
        if p.is_file() and p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts
    }


def test_the_encrypted_app_differs_from_the_plain_one_by_ten_lines():
    plain, encrypted = _files(PLAIN), _files(ENCRYPTED)
    assert plain.keys() == encrypted.keys()
    changed = [
        line
        for name in plain
        for line in difflib.unified_diff(plain[name], encrypted[name], lineterm="", n=0)
        if line.startswith("+") and not line.startswith("+++") and line[1:].strip()
    ]
    assert 0 < len(changed) <= 10, changed


def _run(app: Path, home: Path, run_config: str) -> None:
    flwr_run(app, home, FEDERATION, run_config, home)


def _load(path: Path) -> ArrayRecord:
    fields = pickle.loads(path.read_bytes())
    return ArrayRecord(
        {k: Array(dtype=d, shape=s, stype=t, data=data) for k, (d, s, t, data) in fields.items()}
    )


def _wait_for(path: Path, seconds: float = 90) -> None:
    """``--stream`` can return before the ServerApp's last write."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert path.exists(), path


# `flwr run ... local` starts a SuperLink on Flower's default ports: it runs alone.
@pytest.mark.serial
def test_flwr_run_of_the_encrypted_app_equals_its_plaintext_twin(tmp_path):
    from fedpriv.flower import is_encrypted, release_arrays

    home = tmp_path / "flwr_home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
    )
    plain_out, ckks_out, keys = tmp_path / "plain", tmp_path / "ckks", tmp_path / "keys"
    ckks_run, fedsgd_run = tmp_path / "ckks-run", tmp_path / "fedsgd-run"
    common = f"num-server-rounds={ROUNDS}"
    try:
        _run(PLAIN, home, f"{common} out-dir='{plain_out}'")
        _run(
            ENCRYPTED,
            home,
            f"{common} out-dir='{ckks_out}' fedpriv-key-dir='{keys}' "
            f"fedpriv-record-dir='{ckks_run}'",
        )
        # The plaintext twin's single-image FedSGD round, recorded for the attacks.
        _run(
            PLAIN,
            home,
            f"num-server-rounds=1 local-epochs=1 train-examples=1 out-dir='{tmp_path / 'sgd'}' "
            f"fedpriv-record-dir='{fedsgd_run}'",
        )
    finally:
        # `flwr run` leaves its local SuperLink running: stop it (and its children) by PID.
        for pid in pids_with_cmdline(str(home), "flower-superlink"):
            os.kill(pid, signal.SIGTERM)
    _wait_for(plain_out / "final.pkl")
    _wait_for(ckks_out / "final.pkl")
    initial = _load(plain_out / "round-0.pkl")
    for server_round in range(1, ROUNDS + 1):
        expected = _load(plain_out / f"round-{server_round}.pkl")
        held = _load(ckks_out / f"round-{server_round}.pkl")
        assert is_encrypted(held) and not is_encrypted(expected)  # the server's, ciphertexts
        mean = release_arrays(held, keys, initial)  # the key holder's reading
        for key in expected.keys():
            gap = np.abs(mean[key].numpy() - expected[key].numpy()).max()
            assert gap < 1e-6, (server_round, key, gap)
    deadline = time.monotonic() + 20
    while pids_with_cmdline(str(home), "flower-superlink") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pids_with_cmdline(str(home), "flower-superlink") == []
    _attack_the_recorded_runs(ckks_run, fedsgd_run, tmp_path)


def _attack_the_recorded_runs(ckks_run: Path, fedsgd_run: Path, tmp_path: Path) -> None:
    """`fedpriv attack --run DIR --model <dotted path>` on the apps' recorded runs, as a
    user types it: gradient inversion does not apply to the encrypted app's server view and
    recovers every client's image of the plaintext twin's single-image FedSGD round."""
    from fedpriv.attacks.results import Status, Threat
    from fedpriv.attacks.runner import read_results

    _wait_for(tmp_path / "sgd" / "final.pkl")
    fedpriv = Path(sys.executable).with_name("fedpriv")
    env = {**os.environ, "PYTHONPATH": str(PLAIN)}
    for run in (ckks_run, fedsgd_run):
        argv = [str(fedpriv), "attack", "--run", str(run), "--model", "pytorch_app.task:Net"]
        argv += ["--threat", "curious-server", "--attacks", "ig"]
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    hidden = read_results(ckks_run, Threat.CURIOUS_SERVER)["ig"]
    assert hidden.status == Status.NOT_APPLICABLE and "ciphertext" in hidden.reason
    scored = read_results(fedsgd_run, Threat.CURIOUS_SERVER)["ig"]
    assert scored.status == Status.SCORED and len(scored.clients) == 3
    assert all(c.psnr >= 30 for c in scored.clients), [c.psnr for c in scored.clients]
