"""ckks-threshold federations on the Simulation Engine (slow; CI runs them)."""

from pathlib import Path

import numpy as np
import pytest
from support import EQUIVALENCE

from fedpriv.attacks.views import Capability, CoalitionView, NotApplicable, ServerView
from fedpriv.config import RunConfig
from fedpriv.release import round_models
from fedpriv.rundir import RunDirectory, read_json

pytestmark = pytest.mark.slow


def _run(tmp_path_factory, name: str, **changes) -> Path:
    from fedpriv.simulation import run_simulation

    out = tmp_path_factory.mktemp("threshold") / name
    config = RunConfig(**{"num_clients": 5, "num_server_rounds": 5, **changes})
    return run_simulation(config.replace(out_dir=str(out)))


@pytest.fixture(scope="module")
def threshold_run(tmp_path_factory) -> Path:
    """Five clients, t = ceil(10/3) = 4, the FedSGD recipe of the equivalence tests."""
    return _run(tmp_path_factory, "threshold", aggregation="ckks-threshold", **EQUIVALENCE)


def test_every_round_equals_plaintext_fedavg_within_1e_6(plaintext_run, threshold_run):
    plain, shared = round_models(plaintext_run), round_models(threshold_run)
    assert len(plain) == len(shared) == 5
    differences = [float(np.abs(a - b).max()) for a, b in zip(plain, shared, strict=True)]
    assert max(differences) < 1e-6, differences


def test_default_recipe_reaches_plaintext_accuracy(tmp_path_factory):
    plain = _run(tmp_path_factory, "plain-default", aggregation="plaintext", num_server_rounds=3)
    shared = _run(
        tmp_path_factory, "threshold-default", aggregation="ckks-threshold", num_server_rounds=3
    )
    accuracy = [RunDirectory(p).read_history().rounds[-1].accuracy for p in (plain, shared)]
    assert abs(accuracy[0] - accuracy[1]) <= 0.005, accuracy


def test_setup_and_bytes_are_recorded(threshold_run):
    rundir = RunDirectory(threshold_run)
    setup = read_json(rundir.path / "threshold.json")
    assert setup["threshold"] == 4 and len(setup["parties"]) == 5
    rounds = rundir.read_history().rounds
    # Round 1 also carries the key setup; later rounds: ciphertexts and shares up.
    assert rounds[0].bytes_up > rounds[1].bytes_up > 0
    names = {p.name for p in (rundir.path / "server_view" / "round-002").iterdir()}
    assert any(n.startswith("train-decrypt-recv-") for n in names)


def test_the_server_sees_aggregates_but_no_update(threshold_run):
    view = ServerView(threshold_run)
    assert "share(s) of each party's secret" in view.missing(Capability.CLIENT_UPDATES)
    assert view.missing(Capability.AGGREGATE_UPDATES) is None
    with pytest.raises(NotApplicable, match="needs 4"):
        view.updates(2)
    aggregate = view.aggregates([2])[0]
    assert np.abs(aggregate.after - round_models(threshold_run)[1]).max() == 0


def test_fewer_than_t_colluders_decrypt_nothing_individual(threshold_run):
    view = CoalitionView(threshold_run, colluders=3)
    assert "3 share(s)" in view.missing(Capability.CLIENT_UPDATES)


def test_t_colluders_decrypt_every_upload(threshold_run):
    """Four parties' shares reconstruct the secret: each upload decrypts, and their FedAvg is
    the round's model."""
    view = CoalitionView(threshold_run, colluders=4)
    assert view.missing(Capability.CLIENT_UPDATES) is None
    models = round_models(threshold_run)
    for server_round in (1, 2):
        updates = view.updates(server_round)
        assert len(updates) == 5
        weights = [u.num_examples for u in updates]
        mean = np.average([u.after for u in updates], axis=0, weights=weights)
        assert np.abs(mean - models[server_round - 1]).max() < 1e-6


def test_shares_stay_in_the_key_folder_and_out_of_the_server_view(threshold_run):
    rundir = RunDirectory(threshold_run)
    from fedpriv.schemes.threshold.party import read_held

    shares = sorted((rundir.key_dir / "threshold").glob("party-*.npz"))
    assert len(shares) == 5
    views = [f.read_bytes() for f in (rundir.path / "server_view").rglob("*.pb")]
    for path in shares:
        _, held = read_held(path)
        assert len(held) == 5  # a share of every dealer's secret
        for share in held.values():
            secret = share.tobytes()[:32]
            assert not any(secret in view for view in views)
