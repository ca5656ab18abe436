"""Defenses: DP clipping, noise and accounting, DP-SGD, MemGuard."""

import dp_accounting
import dp_accounting.rdp
import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord
from opacus.accountants import RDPAccountant
from scipy import stats

from fedpriv.config import RunConfig
from fedpriv.data import load_dataset
from fedpriv.defenses.accounting import ClientSampling, client_level_epsilon, dp_sgd_epsilon
from fedpriv.defenses.dp import DPSettings, clip_update, draw_noise
from fedpriv.defenses.dp_sgd import train_dp_sgd
from fedpriv.defenses.memguard import MemGuard, MemGuardSettings, train_defense_classifier
from fedpriv.defenses.server_noise import ServerSideNoise
from fedpriv.errors import ConfigError
from fedpriv.models import build_model
from fedpriv.strategies.facts import ReportsFacts
from fedpriv.training import Recipe, train


# -- DP ----------------------------------------------------------------------------------------
def test_clipping_bounds_the_norm():
    rng = np.random.default_rng(0)
    for scale in (0.01, 1.0, 100.0):
        update = rng.normal(0, scale, 5000)
        clipped = clip_update(update, 2.0)
        assert np.linalg.norm(clipped) <= 2.0 + 1e-9
        if np.linalg.norm(update) <= 2.0:
            assert np.array_equal(clipped, update)
        else:
            np.testing.assert_allclose(
                clipped / np.linalg.norm(clipped), update / np.linalg.norm(update)
            )


def test_noise_has_the_configured_standard_deviation():
    settings = DPSettings(noise_multiplier=0.8, clipping_norm=2.5, noise_seed=3)
    noise = draw_noise(settings, 200_000, server_round=1)
    result = stats.kstest(noise, "norm", args=(0.0, 0.8 * 2.5))
    assert result.pvalue > 0.01
    assert noise.std() == pytest.approx(2.0, rel=0.01)
    assert np.array_equal(noise, draw_noise(settings, 200_000, server_round=1))
    assert not np.array_equal(noise, draw_noise(settings, 200_000, server_round=2))
    fresh = DPSettings(noise_multiplier=0.8, clipping_norm=2.5)
    assert not np.array_equal(draw_noise(fresh, 10, 1), draw_noise(fresh, 10, 1))


class _Summing(ReportsFacts):
    """A summing strategy that has summed every round (authenticated: nothing to add)."""

    num_values = 4
    authenticated = True

    def aggregate_train(self, server_round, replies):
        self.round_facts(server_round).summed = 3
        return ArrayRecord(), None

    def add_plain(self, record, values):
        raise AssertionError("authenticated sums take nothing from the server")


def _dp_accounting_epsilon(population, sampled, sigma, rounds, delta):
    """The independent accountant: Google's dp-accounting, from its primitive events."""
    gaussian = dp_accounting.GaussianDpEvent(sigma / 2)  # replace-one: sensitivity 2 C
    event = (
        gaussian
        if sampled == population
        else dp_accounting.SampledWithoutReplacementDpEvent(population, sampled, gaussian)
    )
    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return accountant.get_epsilon(delta)


# (clients, canaries, fraction-train, clients a round samples, sigma, rounds)
SETTINGS = [(30, 0, 0.5, 15, 2.5, 40), (100, 0, 0.1, 10, 1.0, 25), (5, 0, 1.0, 5, 1.0, 5),
            (20, 4, 0.25, 6, 4.0, 12)]  # fmt: skip


@pytest.mark.parametrize(
    ("clients", "canaries", "fraction", "sampled", "sigma", "rounds"), SETTINGS
)
def test_the_reported_epsilon_is_dp_accountings_for_the_sampling_the_run_does(
    clients, canaries, fraction, sampled, sigma, rounds
):
    """The epsilon a run reports each round is dp-accounting's for ``sampled`` of all nodes
    (canaries included) without replacement, replace-one adjacency (within 1%)."""
    config = RunConfig(
        aggregation="ckks",
        defense="dp",
        num_clients=clients,
        dp_canaries=canaries,
        fraction_train=fraction,
        dp_noise_multiplier=sigma,
    )
    sampling = ClientSampling.from_config(config)
    assert (sampling.population, sampling.sampled) == (clients + canaries, sampled)
    strategy = ServerSideNoise(_Summing(), DPSettings.from_config(config), sampling)
    for server_round in (1, rounds):
        strategy.aggregate_train(server_round, [])
        reported = strategy.round_facts(server_round).epsilon
        expected = _dp_accounting_epsilon(clients + canaries, sampled, sigma, server_round, 1e-5)
        assert reported == pytest.approx(expected, rel=0.01)
    assert client_level_epsilon(0.0, sampling, rounds, 1e-5) == float("inf")


def test_the_default_comparison_spends_what_dp_accounting_says():
    """15 of 30 clients a round, sigma 2.5, 40 rounds, delta 1e-5: about 35.7 under
    replace-one adjacency, not the 6.79 that Poisson sampling with add/remove would give."""
    sampling = ClientSampling(30, 15)
    assert client_level_epsilon(2.5, sampling, 40, 1e-5) == pytest.approx(35.73, abs=0.05)
    with pytest.raises(ConfigError, match="samples 1..30 clients"):
        ClientSampling(30, 31)


def test_dp_needs_ckks_and_valid_parameters():
    with pytest.raises(ConfigError, match="needs aggregation 'ckks'"):
        RunConfig(defense="dp")
    with pytest.raises(ConfigError, match="dp-clipping-norm must be > 0"):
        RunConfig(aggregation="ckks", defense="dp", dp_clipping_norm=0.0)
    with pytest.raises(ConfigError, match="valid choices: none, dp, dp-sgd, memguard"):
        RunConfig(defense="he")


# -- MemGuard ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overfit_model():
    data = load_dataset("digits")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.y))
    members, others = order[:60], order[60:460]
    model = build_model("mlp", data.input_shape, 10, seed=0)
    train(model, data.x[members], data.y[members], 150, 16, 0.05, 0.9, seed=0)
    return model, data, members, others


def test_memguard_keeps_labels_and_budget(overfit_model):
    model, data, members, others = overfit_model

    def probs(idx):
        return torch.softmax(model(torch.from_numpy(data.x[idx])), 1).detach().numpy()

    classifier = train_defense_classifier(probs(members), probs(others[:200]), seed=0)
    for epsilon in (0.1, 1.0):
        guard = MemGuard(model, classifier, MemGuardSettings(epsilon=epsilon))
        queries = data.x[np.concatenate([members, others])]
        answers = guard(queries)
        raw = torch.softmax(model(torch.from_numpy(queries)), 1).detach().numpy()
        assert np.array_equal(answers.argmax(1), raw.argmax(1))
        assert np.allclose(answers.sum(1), 1.0, atol=1e-5) and answers.min() >= 0
        assert guard.last_distortion.mean() <= epsilon
        np.testing.assert_array_equal(guard(queries[:20]), answers[:20])  # same query, same answer
    # With an ample budget the defense classifier is driven to 0.5 on (almost) every query.
    h = classifier(torch.from_numpy(guard(queries))).detach().abs()
    assert float((h < 0.5).float().mean()) > 0.9


# -- DP-SGD ------------------------------------------------------------------------------------
def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_dp_sgd_clips_per_example_gradients_and_repeats():
    data = load_dataset("digits")
    x, y = data.x[:64], data.y[:64]
    results = []
    for _ in range(2):
        model = build_model("mlp", data.input_shape, 10, seed=1)
        start = _flat(model)
        # sigma = 0 isolates clipping: each step moves the weights by at most lr * C.
        settings = DPSettings(noise_multiplier=0.0, clipping_norm=0.01)
        train_dp_sgd(model, x, y, Recipe(1, 64, 0.5, 0.0), settings, seed=3)
        results.append(_flat(model))
        steps = 1  # one epoch of Poisson batches with rate 1: a single step
        assert torch.linalg.norm(results[-1] - start) <= 0.5 * 0.01 * steps + 1e-6
    assert torch.equal(results[0], results[1])


def test_dp_sgd_epsilon_matches_step_by_step_accounting():
    settings = DPSettings(noise_multiplier=1.1, clipping_norm=1.0, delta=1e-5)
    accountant = RDPAccountant()
    n, batch, epochs, rounds = 288, 16, 5, 3
    for _ in range(rounds * epochs * (n // batch)):
        accountant.step(noise_multiplier=1.1, sample_rate=batch / n)
    assert dp_sgd_epsilon(settings, n, batch, epochs, rounds) == pytest.approx(
        accountant.get_epsilon(1e-5)
    )


def test_gdp_epsilon_solves_the_gdp_privacy_profile():
    import math

    from scipy.stats import norm

    from fedpriv.attacks.dp_audit import gdp_epsilon

    def delta(epsilon, mu):
        return norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(
            -epsilon / mu - mu / 2
        )

    for mu in (0.5, 1.0, 2.0, 5.0):
        epsilon = gdp_epsilon(mu, 1e-5)
        assert abs(delta(epsilon, mu) - 1e-5) < 1e-9
    assert gdp_epsilon(0.0, 1e-5) == 0.0 and gdp_epsilon(-1.0, 1e-5) == 0.0
    assert gdp_epsilon(1.0, 1e-5) < gdp_epsilon(2.0, 1e-5) < gdp_epsilon(4.0, 1e-5)


def test_canaries_move_the_model_by_the_clipping_norm_along_secret_directions():
    import numpy as np

    from fedpriv.config import RunConfig
    from fedpriv.defenses.canary import canary_direction, canary_update, is_canary
    from fedpriv.parameters import state_to_vector
    from fedpriv.task import initial_state

    config = RunConfig(num_clients=5, dp_canaries=3, dp_clipping_norm=0.7)
    start = initial_state(config)
    base = state_to_vector(start)
    assert [is_canary(config, p) for p in (4, 5, 7)] == [False, True, True]
    # A node beyond them (more SuperNodes than clients) is none: it found a canary's update
    # mixed into a run without canaries, which every client then refused (seen in compose).
    assert not is_canary(config, 8) and not is_canary(config.replace(dp_canaries=0), 5)
    first = canary_update(config, 5, start, 1.0)
    step = state_to_vector(first.state) - base
    assert abs(np.linalg.norm(step) - 0.7) < 1e-5
    assert np.allclose(step / 0.7, canary_direction(config, 0, base.size), atol=1e-6)
    second = canary_direction(config, 1, base.size)
    assert abs(float(second @ canary_direction(config, 0, base.size))) < 0.1
