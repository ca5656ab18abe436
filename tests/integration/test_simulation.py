"""End-to-end federations on Flower's Simulation Engine (slow; CI runs them)."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support import descendants, flwr_run, pids_with_cmdline

from fedpriv.cli import main
from fedpriv.crypto.keys import load_client_context, load_server_context
from fedpriv.crypto.packing import decrypt_update, stype
from fedpriv.crypto.presets import DEFAULT_PRESET, get_preset
from fedpriv.errors import ConfigError, CryptoError
from fedpriv.models import load_state, state_from_bytes
from fedpriv.parameters import state_to_vector
from fedpriv.release import round_models
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme
from fedpriv.task import client_data, initial_state, new_model
from fedpriv.training import evaluate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PRESET = get_preset(DEFAULT_PRESET)
# The simulated federation of `flwr run` (`options.` in config.toml is deprecated in Flower 1.42).
FEDERATION = "num-supernodes=5 client-resources-num-cpus=1"
ROUND_KEYS = {"round", "accuracy", "loss", "seconds", "bytes_up", "bytes_down", "clients"}


def _accuracies(path):
    return [r.accuracy for r in RunDirectory(path).read_history().rounds]


def _global_vectors(path):
    return round_models(path)


# -- the run directory ------------------------------------------------------------------------
def test_run_directory_contents(plaintext_run):
    rundir = RunDirectory(plaintext_run)
    config = rundir.read_config()
    assert config.num_clients == 5 and config.out_dir == str(plaintext_run)
    rounds = rundir.read_history().rounds
    assert [r.round for r in rounds] == [1, 2, 3, 4, 5]
    stored = json.loads((rundir.path / "history.json").read_text())["rounds"]
    assert all(ROUND_KEYS <= set(entry) for entry in stored)
    for entry in rounds:
        assert len(entry.clients) == 5 and entry.seconds > 0
        # Bytes are the serialized payloads the server stored in its view, byte for byte.
        view = rundir.path / "server_view" / f"round-{entry.round:03d}"
        received = sum(p.stat().st_size for p in view.glob("*-recv-*.pb"))
        assert entry.bytes_up == received
        sent = {p.stem: p.stat().st_size for p in view.glob("*-sent.pb")}
        assert entry.bytes_down == 5 * (sent["train-sent"] + sent["evaluate-sent"])
    # model.pt is the final global model and reproduces the reported accuracy.
    model = new_model(config)
    load_state(model, state_from_bytes(rundir.model_path.read_bytes()))
    correct = total = 0
    for pid in range(5):
        data = client_data(config, pid)
        _, acc = evaluate(model, data.x_test, data.y_test)
        correct += acc * len(data.y_test)
        total += len(data.y_test)
    assert correct / total == pytest.approx(rounds[-1].accuracy, abs=1e-6)


def test_same_seed_same_accuracies(plaintext_run, run_twice):
    assert _accuracies(plaintext_run) == _accuracies(run_twice)


@pytest.mark.parametrize("aggregation", ["plaintext", "secagg"])
def test_sampled_clients_repeat_across_fresh_simulations(tmp_path, aggregation):
    """Half the clients per round: each fresh simulation draws new node ids, the same clients.

    Flower samples by position among the node ids; the server orders them by partition.
    """
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        main(["run", "--aggregation", aggregation, "--clients", "6", "--rounds", "3",
              "--fraction-train", "0.5", "--max-train-samples", "8",
              "--out", str(out)])  # fmt: skip
        runs.append(RunDirectory(out))
    nodes = [[set(r.clients) for r in run.read_history().rounds] for run in runs]
    assert nodes[0] != nodes[1]  # other node ids ...
    first, second = (state_to_vector(state_from_bytes(run.model_path.read_bytes())) for run in runs)
    # ... but the same clients trained, and the same model came out: exactly in plaintext,
    # up to SecAgg+'s stochastic rounding (Flower's, unseeded) under secagg. Another
    # choice of clients moves the model by orders of magnitude more.
    assert np.abs(first - second).max() <= (0.0 if aggregation == "plaintext" else 1e-4)


# -- ckks against plaintext -------------------------------------------------------------------
def test_ckks_follows_plaintext_fedavg_from_the_same_seed(plaintext_run, ckks_run):
    """Round 1 starts both arms from the seed's model: its aggregates differ by the
    encryption error alone. Later rounds train on models that differ by that error, and
    training amplifies a difference of 1e-7 unpredictably (a ReLU that flips for one record
    moves a weight by 1e-5; measured with ``python -m fedpriv.bench.equivalence``), so the
    per-round claim is the next test's: each aggregate is the FedAvg of what arrived."""
    plain, enc = _global_vectors(plaintext_run), _global_vectors(ckks_run)
    assert len(plain) == len(enc) == 5
    assert float(np.abs(plain[0] - enc[0]).max()) < 1e-6
    assert abs(_accuracies(plaintext_run)[-1] - _accuracies(ckks_run)[-1]) <= 0.005


def _check_fedavg_of_what_arrived(path):
    rundir = RunDirectory(path)
    context = load_client_context(rundir.key_dir)
    scheme = load_scheme(rundir.read_config())
    encoding = scheme.encodings().update
    reference = state_to_vector(initial_state(rundir.read_config()))
    size = reference.size
    for server_round in rundir.checkpoint_rounds():
        updates = [
            decrypt_update(rundir.read_payload(p)["arrays"], context, encoding, size, reference)
            for p in rundir.view_files(server_round, "train-recv-").values()
        ]
        weights = np.array([weight for _, weight in updates])
        expected = np.average([values for values, _ in updates], axis=0, weights=weights)
        aggregate, total = decrypt_update(
            rundir.read_checkpoint(server_round)["arrays"], context, encoding, size, reference
        )
        assert np.abs(aggregate - expected).max() < 1e-6
        assert total == weights.sum()
    return {r.aggregate_form for r in rundir.read_history().rounds}


def test_ckks_aggregate_is_fedavg_of_what_arrived(ckks_run):
    """A colluding key holder decrypts each update: their FedAvg is the decrypted aggregate."""
    forms = _check_fedavg_of_what_arrived(ckks_run)
    # Five uploads, within the default link's break-even (65): c1 travels as seeds. The
    # expanded form is exercised by test_packed's and test_strategies' sums past it.
    assert forms == {"seeds"}


def test_the_earlier_seal_format_still_runs_and_releases(tmp_path):
    """``n4096-compact`` (SEAL's own format, weighted models, SEAL on the server): runs made
    with it before the packed format still resume and release."""
    from fedpriv.config import RunConfig
    from fedpriv.simulation import run_simulation

    config = RunConfig(
        aggregation="ckks",
        ckks_preset="n4096-compact",
        ckks_authenticated=False,  # SEAL's format is not in numpy: no MAC over it
        num_clients=3,
        num_server_rounds=2,
        out_dir=str(tmp_path / "run"),
    )
    path = run_simulation(config)
    assert _check_fedavg_of_what_arrived(path) == {"full"}
    history = RunDirectory(path).read_history().rounds
    assert all(0.5 < r.accuracy <= 1.0 for r in history)


def test_ckks_released_model_is_final_aggregate(ckks_run):
    rundir = RunDirectory(ckks_run)
    state = state_from_bytes(rundir.model_path.read_bytes())
    released = np.concatenate([v.ravel() for v in state.values()])
    final = _global_vectors(ckks_run)[-1]
    assert np.abs(released - final).max() < 1e-6
    history = rundir.read_history().rounds
    assert all(0.0 < r.accuracy <= 1.0 and r.loss > 0 for r in history)


# -- the server holds nothing plaintext -------------------------------------------------------
def _ciphertexts(record_dict):
    """Every ciphertext of every record as ``(name, bytes, values)``: each record holds one
    Array of them (its format checked) and, authenticated, an authenticator (checked to be
    one), and nothing else."""
    from fedpriv.crypto.authenticated import AUTH_KEY, split
    from fedpriv.crypto.packing import ciphertext_blobs, record_values

    for record in record_dict.array_records.values():
        ciphertexts, auth = split(record)
        if AUTH_KEY in record:
            assert auth is not None  # who summed what, and a tag: no value
        if len(ciphertexts):
            assert all(ciphertexts[k].stype == stype(PRESET) for k in ciphertexts.keys())
            yield from ciphertext_blobs(ciphertexts, PRESET, record_values(ciphertexts))


def test_server_view_and_checkpoints_are_ciphertext_only(ckks_run):
    rundir = RunDirectory(ckks_run)
    server = load_server_context(rundir.key_dir)
    payloads = sorted((rundir.path / "server_view").rglob("*.pb"))
    payloads += sorted((rundir.path / "checkpoints").glob("*.pb"))
    checked = 0
    for path in payloads:
        content = rundir.read_payload(path)
        if "-recv-" in path.name:
            # Nothing in a client's message but ciphertext: no metrics, counts or configs.
            assert not content.metric_records and not content.config_records, path
        found = list(_ciphertexts(content))
        if path.name == "train-sent.pb" and path.parent.name == "round-001":
            assert found == []  # the server never holds a plaintext model, not even in round 1
        for name, data, size in found:
            ciphertext = server.parse(data, f"{path.name} {name}", size)
            with pytest.raises(CryptoError, match="secret key"):
                server.decrypt(ciphertext, size)
            checked += 1
    assert checked > 100


def test_no_sample_count_reaches_the_server(ckks_run):
    rundir = RunDirectory(ckks_run)
    config = rundir.read_config()
    counts = [len(client_data(config, pid).y_train) for pid in range(5)]
    counts += [len(client_data(config, pid).y_test) for pid in range(5)]
    needles = {np.float64(c).tobytes() for c in counts} | {np.float32(c).tobytes() for c in counts}
    for path in (rundir.path / "server_view").rglob("*-recv-*.pb"):
        content = rundir.read_payload(path)
        assert not content.metric_records
        for _, data, _ in _ciphertexts(content):
            assert not any(needle in data for needle in needles)
    history = json.loads((rundir.path / "history.json").read_text())
    assert "num-examples" not in json.dumps(history)


# -- acceptance runs through the command line -------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "minimum"),
    [
        (["--dataset", "digits", "--model", "mlp", "--clients", "5", "--rounds", "5"], 0.85),
        (["--dataset", "mnist5k", "--model", "cnn", "--clients", "10", "--rounds", "3"], 0.85),
    ],
)
def test_cli_acceptance_runs(argv, minimum, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--aggregation", "plaintext", *argv, "--out", str(out)]) == 0
    assert f"results: {out}" in capsys.readouterr().out
    assert _accuracies(out)[-1] >= minimum


# -- the Flower-native path -------------------------------------------------------------------
def _pids_using(marker: str) -> list[int]:
    return pids_with_cmdline(marker, "flower-superlink")


def _flwr_run(home: Path, run_config: str, out: Path) -> None:
    proc = flwr_run(Path("."), home, FEDERATION, run_config, ROOT)
    output = proc.stdout + proc.stderr
    assert "deprecated" not in output  # the documented syntax is current
    assert output.count("[ROUND 1/2]") == 1  # each log line once
    # `--stream` can return before the run's last write (and exits 0 even on failure).
    deadline = time.monotonic() + 60
    while len(_accuracies_or_empty(out)) < 2 and time.monotonic() < deadline:
        time.sleep(1)


# `flwr run . local` starts a SuperLink on Flower's default ports (9091-9093), which the
# container tests' compose file also maps on the host: it runs alone, after the parallel part.
@pytest.mark.serial
def test_flwr_run_runs_the_same_federation(plaintext_run, tmp_path):
    home = tmp_path / "flwr_home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
    )
    common = "num-server-rounds=2 learning-rate=0.5 momentum=0.0 local-epochs=1 batch-size=512"
    plain_out, ckks_out, keys = tmp_path / "plain", tmp_path / "ckks", tmp_path / "keys"
    try:
        # `flwr run` provisions no client identities: model consistency off (documented).
        _flwr_run(home, f"{common} model-consistency=false out-dir='{plain_out}'", plain_out)
        # The Flower-native ckks path: provision keys, run, release as the key holder.
        assert main(["keys", "new", "--out", str(keys)]) == 0
        _flwr_run(
            home, f"{common} aggregation='ckks' key-dir='{keys}' out-dir='{ckks_out}'", ckks_out
        )
    finally:
        # `flwr run` leaves its local SuperLink running: stop it (and its children) by PID.
        for pid in _pids_using(str(home)):
            os.kill(pid, signal.SIGTERM)
    assert _accuracies(plain_out) == _accuracies(plaintext_run)[:2]
    assert _accuracies(ckks_out) == [None, None]  # the server cannot read its metrics
    assert main(["release", "--run", str(ckks_out), "--keys", str(keys)]) == 0
    for a, b in zip(_accuracies(ckks_out), _accuracies(plaintext_run)[:2], strict=True):
        assert abs(a - b) <= 0.005
    assert (ckks_out / "model.pt").exists()
    deadline = time.monotonic() + 20
    while _pids_using(str(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _pids_using(str(home)) == []


def _accuracies_or_empty(path):
    try:
        return _accuracies(path)
    except (OSError, ValueError, ConfigError):
        return []


def test_model_loads_into_torch(plaintext_run):
    rundir = RunDirectory(plaintext_run)
    model = new_model(rundir.read_config())
    load_state(model, state_from_bytes(rundir.model_path.read_bytes()))
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


# -- SecAgg+ ------------------------------------------------------------------------------------
def test_secagg_reaches_plaintext_accuracy(plaintext_run, secagg_run):
    from fedpriv.attacks.runner import run_attacks

    plain, secure = _accuracies(plaintext_run), _accuracies(secagg_run)
    assert len(secure) == 5 and abs(plain[-1] - secure[-1]) <= 0.01, (plain, secure)
    history = RunDirectory(secagg_run).read_history().rounds
    assert all(len(r.clients) == 5 and r.bytes_up > 0 for r in history)
    masked = list(
        (secagg_run / "server_view" / "round-001").glob("train-collect_masked_vectors-recv-*")
    )
    assert len(masked) == 5
    from fedpriv.attacks.views import Capability, ServerView

    hidden = ServerView(secagg_run).missing(Capability.CLIENT_UPDATES)
    assert hidden is not None and "masked vectors only" in hidden
    # What the server reads instead is each round's aggregate, and that is what ig inverts.
    result = run_attacks(secagg_run, "curious-server", ["ig"])[0]
    assert result.settings is not None and result.settings["target"] == "round aggregates"


def test_no_ray_process_outlives_a_run(plaintext_run):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p for p in descendants(os.getpid()) if "ray" in p[1] or "gcs_server" in p[1]]
        if not left:
            break
        time.sleep(0.5)
    assert left == []
