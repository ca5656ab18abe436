"""Client-level DP under ckks in a real federation (slow)."""

import numpy as np
import pytest

from fedpriv.config import RunConfig
from fedpriv.defenses.accounting import privacy_spent
from fedpriv.defenses.dp import DPSettings, draw_noise


@pytest.mark.slow
def test_ckks_dp_aggregate_is_clipped_sum_plus_server_noise(tmp_path):
    from fedpriv.attacks.views import CoalitionView
    from fedpriv.rundir import RunDirectory
    from fedpriv.simulation import run_simulation

    config = RunConfig(
        aggregation="ckks",
        defense="dp",
        num_clients=3,
        num_server_rounds=2,
        dp_noise_multiplier=0.3,
        dp_clipping_norm=0.5,
        dp_noise_seed=11,
        out_dir=str(tmp_path / "run"),
    )
    path = run_simulation(config)
    rundir, view = RunDirectory(path), CoalitionView(path)
    holder = view.sight.holder  # the colluding client's key holder
    settings = DPSettings.from_config(config)
    history = rundir.read_history().rounds
    for server_round in (1, 2):
        start = view.global_model(server_round)
        uploads = [u.after for u in view.updates(server_round)]
        assert [u.num_examples for u in view.updates(server_round)] == [1, 1, 1]
        for upload in uploads:
            assert np.linalg.norm(upload - start) <= 0.5 + 1e-6
        total = holder.decrypt(rundir.read_checkpoint(server_round)["arrays"])
        noise = draw_noise(settings, len(start), server_round)
        assert np.abs(total[:-1] - (np.sum(uploads, axis=0) + noise)).max() < 1e-6
        assert round(total[-1]) == 3
        expected = privacy_spent(0.3, 1.0, server_round, 1e-5)
        assert history[server_round - 1].dp_epsilon == pytest.approx(expected)
