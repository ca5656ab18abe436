"""Auditing (slow; CI runs them): client-level membership inference and the one-run DP audit."""

import pytest

from fedpriv.attacks.dp_audit import dp_audit
from fedpriv.attacks.runner import run_attacks
from fedpriv.bench.auditing import CLIENT_LEVEL, DP_AUDIT
from fedpriv.config import RunConfig
from fedpriv.defenses.server_noise import DISABLE_NOISE
from fedpriv.simulation import run_simulation

pytestmark = pytest.mark.slow

# The federations the documented numbers come from (`python -m fedpriv.bench.auditing`).
OVERFIT_CLIENTS = CLIENT_LEVEL
AUDITED = DP_AUDIT


def _run(tmp_path, name, **config):
    return run_simulation(RunConfig(**config, out_dir=str(tmp_path / name)))


def test_client_level_membership_on_an_overfit_federation(tmp_path):
    plain = _run(tmp_path, "plaintext", aggregation="plaintext", **OVERFIT_CLIENTS)
    server = {r.attack: r for r in run_attacks(plain, "curious-server", ["client-membership"])}
    result = server["client-membership"]
    assert result.metrics.auc >= 0.8, result.metrics
    assert result.settings["participants"] == 10 and result.settings["held_out"] == 10
    outsider = run_attacks(plain, "outsider", ["client-membership"])[0]
    assert outsider.scored and outsider.metrics.members == 10
    ckks = _run(tmp_path, "ckks", aggregation="ckks", **OVERFIT_CLIENTS)
    encrypted = run_attacks(ckks, "curious-server", ["client-membership"])[0]
    assert not encrypted.applicable and "ciphertext only" in encrypted.reason


def test_the_audit_is_within_the_accountant_with_noise_and_far_above_without(tmp_path, monkeypatch):
    noisy = dp_audit(_run(tmp_path, "noisy", **AUDITED))
    assert noisy.claimed_epsilon is not None
    assert noisy.empirical_epsilon <= noisy.claimed_epsilon, noisy
    monkeypatch.setenv(DISABLE_NOISE, "1")
    silent = dp_audit(_run(tmp_path, "silent", **AUDITED))
    # The accountant claims the same epsilon; the model says otherwise.
    assert silent.claimed_epsilon == pytest.approx(noisy.claimed_epsilon)
    assert silent.empirical_epsilon > 10 * silent.claimed_epsilon, silent


def test_a_run_without_dp_audits_large(tmp_path):
    plain = dp_audit(
        _run(tmp_path, "plain", aggregation="plaintext", dp_canaries=4, num_clients=5,
             num_server_rounds=2)
    )  # fmt: skip
    assert plain.claimed_epsilon is None and plain.empirical_epsilon > 20
