"""The malicious server's crafted models against known answers: dead units, isolation, imprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedpriv.adversaries.crafting import (
    brightness_thresholds,
    imprint_model,
    isolation_models,
    linear_layers,
    read_imprint,
)
from fedpriv.adversaries.record import AttackRecord, Outcome, SentModels, isolate
from fedpriv.adversary import Adversary, ServerAttack
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.models import build_model, load_state
from fedpriv.parameters import State
from fedpriv.training import train

SHAPE = (1, 8, 8)


def _state(seed: int = 0) -> State:
    torch.manual_seed(seed)
    model = build_model("mlp", SHAPE, 10)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _trained(start: State, x: np.ndarray, y: np.ndarray, epochs: int = 4, batch: int = 1) -> State:
    model = build_model("mlp", SHAPE, 10)
    load_state(model, start)
    train(model, x, y, epochs, batch, 0.1, 0.9, seed=3)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _records(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((count, *SHAPE), dtype=np.float32)
    return x, rng.integers(0, 10, count).astype(np.int64)


def test_adversary_key_parses_and_refuses_with_the_valid_form() -> None:
    plan = Adversary.parse("malicious-server:imprint,target=3,round=4")
    assert (plan.attack, plan.target, plan.round) == (ServerAttack.IMPRINT, 3, 4)
    assert Adversary.parse(str(plan)) == plan and Adversary.parse("").honest
    for bad in ("malicious-server:robbing", "curious-server:isolation", "malicious-server:x,y=1"):
        with pytest.raises(ConfigError, match="malicious-server:<isolation|imprint>"):
            Adversary.parse(bad)
    with pytest.raises(ConfigError, match="trivial one"):
        RunConfig(aggregation="ckks", adversary="malicious-server:isolation")
    with pytest.raises(ConfigError, match="model 'mlp'"):
        RunConfig(model="cnn", adversary="malicious-server:isolation")
    # Decryption as an oracle needs parties that decrypt on request, and no crafted model.
    for scheme in ("plaintext", "secagg", "ckks"):
        with pytest.raises(ConfigError, match="decrypt a ciphertext the server chooses"):
            RunConfig(aggregation=scheme, adversary="malicious-server:decrypt-one")
    RunConfig(aggregation="ckks-threshold", model="cnn", adversary="malicious-server:decrypt-one")


def test_dead_model_trains_nothing_but_the_output_bias() -> None:
    target, others = isolation_models(_state())
    x, y = _records(6, 1)
    after = _trained(others, x, y)
    output_bias = linear_layers(others)[-1][1]
    for name in others:
        if name == output_bias:
            assert not np.allclose(after[name], others[name])
        else:
            np.testing.assert_array_equal(after[name], others[name], err_msg=name)
    # The meter unit is dead in the target's model too: its training leaves that row alone.
    trained = _trained(target, x, y)
    (w1, b1), *_ = linear_layers(target)
    np.testing.assert_array_equal(trained[w1][0], target[w1][0])
    assert not np.allclose(trained[w1][1:], target[w1][1:])


@pytest.mark.parametrize("weights", [(1, 1, 1, 1, 1), (3, 1, 2, 5, 1)])
def test_isolation_recovers_the_targets_update_from_a_weighted_average(
    weights: tuple[int, ...],
) -> None:
    honest = _state()
    target, others = isolation_models(honest)
    trained = [
        _trained(target if i == 0 else others, *_records(w, 10 + i)) for i, w in enumerate(weights)
    ]
    total = sum(weights)
    aggregate = {
        k: sum(w * t[k].astype(np.float64) for w, t in zip(weights, trained, strict=True)) / total
        for k in honest
    }
    record = AttackRecord(
        Adversary.parse("malicious-server:isolation"), 2, 7, [1, 2, 3, 4], Outcome.MODELS
    )
    isolated = isolate(record, SentModels(honest, target, others), aggregate)
    assert isolated.share == pytest.approx(weights[0] / total, rel=1e-9)
    for name in honest:
        if name in isolated.ignored:
            continue
        np.testing.assert_allclose(isolated.after[name], trained[0][name], atol=1e-6, err_msg=name)


def test_imprint_reads_back_records_exactly() -> None:
    honest = _state()
    x, y = _records(32, 5)
    thresholds = brightness_thresholds(x.reshape(32, -1).mean(1), len(honest["net.1.bias"]) - 1)
    model = imprint_model(honest, thresholds)
    after = _trained(model, x, y, epochs=1, batch=32)
    (w1, b1), *_ = linear_layers(model)
    images = read_imprint(model[w1] - after[w1], model[b1] - after[b1])
    flat = x.reshape(32, -1)
    psnr = [10 * np.log10(1 / ((images - record) ** 2).mean(axis=1).min()) for record in flat]
    # 127 bins at the data's own quantiles: most records sit alone in theirs, and come back
    # exactly up to float32 cancellation (>= 50 dB); records sharing a bin come back mixed.
    assert sum(p >= 50 for p in psnr) >= 16, sorted(psnr)
