"""Client-level DP under ckks in a real federation (slow)."""

import numpy as np
import pytest

from fedpriv.config import RunConfig
from fedpriv.defenses.accounting import ClientSampling, client_level_epsilon
from fedpriv.defenses.dp import DPSettings, draw_noise, noise_share


@pytest.mark.slow
@pytest.mark.parametrize("authenticated", [False, True], ids=["server-noise", "client-shares"])
def test_ckks_dp_aggregate_is_clipped_sum_plus_server_noise(tmp_path, authenticated):
    """Unauthenticated, the server adds N(0, sigma^2 C^2) to the sum; authenticated, it may
    add nothing and each of the 3 clients adds its share N(0, sigma^2 C^2 / 3)."""
    from fedpriv.attacks.views import CoalitionView
    from fedpriv.parameters import state_to_vector
    from fedpriv.rundir import RunDirectory
    from fedpriv.schemes.base import load_scheme
    from fedpriv.simulation import run_simulation
    from fedpriv.task import initial_state

    config = RunConfig(
        aggregation="ckks",
        defense="dp",
        num_clients=3,
        num_server_rounds=2,
        dp_noise_multiplier=0.3,
        dp_clipping_norm=0.5,
        dp_noise_seed=11,
        ckks_authenticated=authenticated,
        out_dir=str(tmp_path / "run"),
    )
    path = run_simulation(config)
    rundir, view = RunDirectory(path), CoalitionView(path)
    holder = view.sight.holder  # the colluding client's key holder
    settings = DPSettings.from_config(config)
    encoding = load_scheme(config).encodings().update
    reference = state_to_vector(initial_state(config))
    history = rundir.read_history().rounds
    for server_round in (1, 2):
        start = view.global_model(server_round)
        uploads = [u.after for u in view.updates(server_round)]
        assert [u.num_examples for u in view.updates(server_round)] == [1, 1, 1]
        shares = [
            noise_share(settings, len(start), 3, server_round, partition) for partition in range(3)
        ]
        for upload in uploads:
            # Clipped to C (an authenticated upload carries its sender's noise share too).
            norms = [np.linalg.norm(upload - start - share) for share in shares]
            assert (min(norms) if authenticated else np.linalg.norm(upload - start)) <= 0.5 + 1e-6
        if authenticated:
            gathered = np.sum(uploads, axis=0) - 3 * start
            clipped = gathered - np.sum(shares, axis=0)
            assert np.linalg.norm(clipped) <= 1.5 + 1e-6
        # The sum's slots: each upload's drift from the seed's model and its weight (one),
        # scaled by the encoding's unit; the server's noise (unauthenticated) in the same unit.
        total = holder.decrypt(rundir.read_checkpoint(server_round)["arrays"]) * encoding.unit
        drift, weights = total[: len(start)], total[len(start) :]
        noise = 0.0 if authenticated else draw_noise(settings, len(start), server_round)
        expected = np.sum([u - reference for u in uploads], axis=0) + noise
        assert np.abs(drift - expected).max() / 3 < 1e-6  # the mean clients receive
        assert np.abs(weights - 3).max() < 1e-3
        expected = client_level_epsilon(0.3, ClientSampling(3, 3), server_round, 1e-5)
        assert history[server_round - 1].dp_epsilon == pytest.approx(expected)
